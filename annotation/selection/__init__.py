"""Selective annotation: score every proposal, send only the ambiguous ones to people, learn from their reviews.

- ``features``: TF-IDF word + character n-grams, and a local sentence-embedding model's vectors beside them if one is
  configured (embedded once per text and model: an on-disk cache).
- ``scoring``: the classifier committee, the per-item signals (modAL) and how they combine (read its docstring).
- ``rounds``: a train + rescore + route round under a per-project lock, the review-count trigger, the lead's decision
  on a paused auto-accept.
- ``chunks``: rounds of projects too large for one process: a bounded training set, the model stored in the database,
  scoring in chunks any worker runs, one routing step on the round's scores.
- ``calibration``: the calibration sample's size and draw, the checks (random reviews) and the dataset's 95% lower
  bound they give, how much the target lets be auto-accepted, and when a cohort's LLM labels are unreliable (pure
  numpy/scipy). ``rounds.cohort_of`` names an item's cohort: the job (LLM, prompt, model) or the import behind its
  label.
- ``estimates``: accuracy of auto-accepted items and of the whole dataset from the random checks (Clopper-Pearson
  intervals); ``routing_sentences``, the routing state (``Project.routing_state``) in the sentences lead pages show.
"""
from annotation.selection.estimates import accuracy_estimate, audit_proportion, exact_interval, routing_overview
from annotation.selection.rounds import (
    COHORT_FIELDS,
    auto_accept_decide,
    cohort_of,
    selection_maybe_schedule,
    selection_request_round,
    selection_reviews_since_last_round,
    selection_round_due,
    selection_run_round,
)

__all__ = [
    "COHORT_FIELDS",
    "cohort_of",
    "accuracy_estimate",
    "audit_proportion",
    "exact_interval",
    "routing_overview",
    "auto_accept_decide",
    "selection_maybe_schedule",
    "selection_request_round",
    "selection_reviews_since_last_round",
    "selection_round_due",
    "selection_run_round",
]
