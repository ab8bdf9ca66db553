"""The routing page keeps itself current: after "Score and route now" its panel polls while the round is queued or
running, and the panel rendered after the round has ended carries no trigger, so the polling stops."""
from django.urls import reverse

from annotation.models import Project, ScoringRound
from annotation.selection import selection_run_round
from tests.support.factories import make_pool

HX = {"HX-Request": "true"}


def test_score_now_makes_the_panel_poll_until_the_round_has_run(client, project, lead, django_capture_on_commit_callbacks):
    make_pool(project, n_per_class=10)
    client.force_login(lead)
    assert "hx-trigger" not in client.get(reverse("routing", args=[project.id]), headers=HX).content.decode()
    with django_capture_on_commit_callbacks():  # the queued task is not run: no worker in this test
        panel = client.post(reverse("routing_score", args=[project.id]), headers=HX).content.decode()
    assert panel.lstrip().startswith('<div id="routing-panel"') and 'hx-trigger="every 2s"' in panel
    assert "A scoring round is queued" in panel
    polled = client.get(reverse("routing", args=[project.id]), headers=HX).content.decode()
    assert 'hx-trigger="every 2s"' in polled and "<html" not in polled

    selection_run_round(project=Project.objects.get(pk=project.pk), trigger="test")  # what the worker does
    done = client.get(reverse("routing", args=[project.id]), headers=HX).content.decode()
    assert "hx-trigger" not in done
    assert "A scoring round is" not in done and f"v{ScoringRound.objects.get().model_version}" in done


def test_a_running_round_keeps_the_panel_polling(client, project, lead):
    ScoringRound.objects.create(project=project, model_version=1)
    client.force_login(lead)
    page = client.get(reverse("routing", args=[project.id])).content.decode()
    assert 'hx-trigger="every 2s"' in page and "A scoring round is running" in page
