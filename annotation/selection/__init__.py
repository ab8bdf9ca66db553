"""Selective annotation: score every proposal, send only the ambiguous ones to people, learn from their reviews.

- ``features``: TF-IDF word + character n-grams, and a local sentence-embedding model's vectors beside them if one is
  configured (embedded once per text and model: an on-disk cache).
- ``scoring``: the classifier committee, the per-item signals (modAL) and how they combine (read its docstring).
- ``rounds``: a train + rescore + route round under a per-project lock, the review-count trigger, the lead's decision
  on a paused auto-accept.
- ``calibration``: the calibration sample's size and draw, the error model over ambiguity, the dataset's 95% lower
  bound, how much the target lets be auto-accepted, and when the LLM is unreliable (pure numpy/scipy).
- ``estimates``: accuracy of auto-accepted items and of the whole dataset from the audit sample (Wilson intervals);
  ``routing_sentences``, the routing state (``Project.routing_state``) in the sentences lead pages show.
"""
from annotation.selection.estimates import accuracy_estimate, audit_proportion, routing_overview, wilson_interval
from annotation.selection.rounds import (
    auto_accept_decide,
    selection_maybe_schedule,
    selection_request_round,
    selection_reviews_since_last_round,
    selection_round_due,
    selection_run_round,
)

__all__ = [
    "accuracy_estimate",
    "audit_proportion",
    "routing_overview",
    "auto_accept_decide",
    "selection_maybe_schedule",
    "selection_request_round",
    "selection_reviews_since_last_round",
    "selection_round_due",
    "selection_run_round",
    "wilson_interval",
]
