"""The lead's routing page: estimates, rounds, the pause warning and decision, "score now". Who may open it is tested
for every URL at once in tests/system/test_urlconf_permissions.py."""
import pytest
from django.urls import reverse

from annotation.models import Project, ScoringRound, Status
from annotation.selection import tasks
from tests.support.factories import make_item


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.selection_round, "delay", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def pause(project):
    Project.objects.filter(pk=project.pk).update(
        auto_accept_paused=True, auto_accept_paused_reason="Audits found the LLM's label right on 30 of 40 items."
    )


def test_it_shows_estimates_and_rounds(client, project, lead):
    for i in range(20):
        make_item(project, f"audit {i}", status=Status.ACCEPTED, is_audit=True,
                  final_labels=["positive"] if i < 18 else ["negative"])
    for i in range(80):
        make_item(project, f"auto {i}", status=Status.AUTO_ACCEPTED)
    ScoringRound.objects.create(project=project, model_version=3, state=ScoringRound.State.DONE, training_size=100,
                                metrics={"cv_human_agreement": 0.91, "routing": {"to_review": 7}})
    client.force_login(lead)
    body = client.get(reverse("routing", args=[project.id])).content.decode()
    assert "90.0% right" in body and "from 20 random checks" in body  # no round recorded a region: every audit
    assert "whole dataset" in body and "92.0%" in body  # (20 + 80 * 0.9) / 100
    assert "v3" in body and "91.0%" in body
    assert "<html" in body


def test_htmx_gets_the_panel_alone(client, project, lead):
    client.force_login(lead)
    body = client.get(reverse("routing", args=[project.id]), headers={"HX-Request": "true"}).content.decode()
    assert body.lstrip().startswith('<div id="routing-panel">') and "<html" not in body
    assert "No round yet" in body and "no random checks in the range auto-accepted yet" in body


def test_the_estimate_counts_only_the_checks_in_the_range_now_auto_accepted(client, project, lead):
    for i in range(20):  # audits from earlier rounds: 10 of 20 wrong
        make_item(project, f"audit {i}", status=Status.ACCEPTED, is_audit=True,
                  final_labels=["positive"] if i < 10 else ["negative"])
    for i in range(80):
        make_item(project, f"auto {i}", status=Status.AUTO_ACCEPTED)
    Project.objects.filter(pk=project.pk).update(routing_state={
        "phase": "not_yet", "target": 0.9, "remaining": 3, "region": {"checks": 50, "wrong": 1, "reach": 0.2}})
    client.force_login(lead)
    body = client.get(reverse("routing", args=[project.id])).content.decode()
    assert "98.0% right" in body and "from 50 random checks" in body
    # With 30 or more audits in the range, the audits alone: 40 of them, 1 wrong.
    Project.objects.filter(pk=project.pk).update(routing_state={
        "phase": "not_yet", "target": 0.9, "remaining": 3,
        "region": {"checks": 50, "wrong": 1, "reach": 0.2, "calibration_checks": 10, "calibration_wrong": 0}})
    body = client.get(reverse("routing", args=[project.id])).content.decode()
    assert "97.5% right" in body and "from 40 audits in" in body
    assert "still wait for a person" not in body
    # Audits drawn among the items that joined the range wait: those items are a zone of their own, and it says so.
    zones = [{"items": 70, "checks": 50, "wrong": 1, "calibration_checks": 10, "calibration_wrong": 0},
             {"items": 10, "checks": 2, "wrong": 1, "calibration_checks": 2, "calibration_wrong": 1}]
    Project.objects.filter(pk=project.pk).update(routing_state={
        "phase": "not_yet", "target": 0.9, "remaining": 3,
        "region": {"checks": 52, "wrong": 2, "reach": 0.3, "calibration_checks": 12, "calibration_wrong": 1,
                   "zones": zones}})
    body = client.get(reverse("routing", args=[project.id])).content.decode()
    assert "from 42 random checks in" in body and "still wait for a person" in body


def test_it_warns_plainly_when_paused_and_the_lead_resumes(client, project, lead):
    pause(project)
    client.force_login(lead)
    body = client.get(reverse("routing", args=[project.id])).content.decode()
    assert "Auto-accept is paused" in body and "right on 30 of 40" in body
    response = client.post(reverse("routing_decide", args=[project.id]), {"decision": "resume"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert not project.auto_accept_paused and project.auto_accept_decided_at is not None


def test_keep_paused_over_htmx_returns_the_panel(client, project, lead):
    pause(project)
    client.force_login(lead)
    response = client.post(reverse("routing_decide", args=[project.id]), {"decision": "keep"},
                           headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and 'id="routing-panel"' in body and "stays paused" in body
    project.refresh_from_db()
    assert project.auto_accept_paused and "lead kept it paused" in project.auto_accept_paused_reason


def test_a_bad_decision_changes_nothing(client, project, lead):
    pause(project)
    client.force_login(lead)
    client.post(reverse("routing_decide", args=[project.id]), {"decision": "maybe"})
    project.refresh_from_db()
    assert project.auto_accept_paused and project.auto_accept_decided_at is None


def test_deciding_without_a_pause_says_so(client, project, lead):
    client.force_login(lead)
    response = client.post(reverse("routing_decide", args=[project.id]), {"decision": "resume"}, follow=True)
    assert "not paused" in response.content.decode()


def test_score_now_queues_a_forced_round(client, project, lead, sent, django_capture_on_commit_callbacks):
    client.force_login(lead)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("routing_score", args=[project.id]), headers={"HX-Request": "true"})
    assert response.status_code == 200 and "scoring round is queued" in response.content.decode()
    assert sent == [((project.id,), {"force": True})]
    # A second click before the round starts queues nothing more, and says so.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("routing_score", args=[project.id]), headers={"HX-Request": "true"})
    assert "already queued" in response.content.decode()
    assert sent == [((project.id,), {"force": True})]
