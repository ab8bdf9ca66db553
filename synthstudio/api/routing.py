"""Routing: ask for a scoring round, read the latest one, the accuracy estimates from audits and the routing state
(calibration, the certificate, an unreliable LLM) that the routing page shows."""
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from annotation import selection
from annotation.models import ScoringRound
from annotation.selection.estimates import routing_sentences
from synthstudio.api.common import LEAD, access
from synthstudio.api.schemas import EstimatesOut, RoundOut, RoundRequested, RoutingOut

router = Router(tags=["routing"])


def _interval(pair):
    return None if pair is None else {"low": pair[0], "high": pair[1]}


@router.post("/projects/{project_id}/routing/rounds", response={202: RoundRequested},
             summary="Queue a scoring round (score and route now)")
def round_request(request, project_id: int):
    queued = selection.selection_request_round(access(request, project_id, LEAD).project.id, force=True)
    return Status(202, {"queued": queued, "detail": "A scoring round is queued." if queued
                 else "A scoring round is already queued; it routes every open item when it runs."})


@router.get("/projects/{project_id}/routing/rounds/latest", response=RoundOut, summary="The latest scoring round")
def round_latest(request, project_id: int):
    project = access(request, project_id, LEAD).project
    return get_object_or_404(ScoringRound.objects.filter(project=project).order_by("-id")[:1])


@router.get("/projects/{project_id}/routing/estimates", response=EstimatesOut,
            summary="Accuracy of the auto-accepted items and of the dataset, from random checks (95% Clopper-Pearson)")
def estimates(request, project_id: int):
    project = access(request, project_id, LEAD).project
    e = selection.accuracy_estimate(project=project)
    return {"audits": e.audits.n, "audits_kept": e.audits.successes, "human_reviewed": e.human_reviewed,
            "auto_accepted": e.auto_accepted, "auto_accepted_accuracy": e.auto_accepted_accuracy,
            "auto_accepted_interval": _interval(e.auto_accepted_interval), "dataset_accuracy": e.dataset_accuracy,
            "dataset_interval": _interval(e.dataset_interval), "target_accuracy": project.target_accuracy}


@router.get("/projects/{project_id}/routing", response=RoutingOut,
            summary="The routing state: calibrating, not yet, target reached (certified) or LLM unreliable")
def routing_state(request, project_id: int):
    project = access(request, project_id, LEAD).project
    sentences = routing_sentences(project.routing_state or {})
    return {"state": project.routing_state or {}, "headline": sentences.headline if sentences else None,
            "llm": sentences.llm if sentences else None, "unreliable": bool(sentences and sentences.unreliable),
            "certified": (project.routing_state or {}).get("phase") == "reached",
            "auto_accept_paused": project.auto_accept_paused,
            "auto_accept_paused_reason": project.auto_accept_paused_reason,
            "reviews_since_last_round": selection.selection_reviews_since_last_round(project=project)}
