import pytest
from django.core.management import CommandError, call_command

from annotation.management.commands.demo import DEMO_PROJECT, MR_PROJECT, MR_TARGET
from annotation.models import Item, Label, Membership, Project, Review, Source, Status
from annotation.queue.services import queue_claim
from annotation.selection.calibration import calibration_size


def test_demo_builds_its_projects_once(db, capsys):
    call_command("demo", force=True)
    out = capsys.readouterr().out
    assert "log in as lead / demo-lead" in out and "log in as annotator / demo-annotator" in out
    project = Project.objects.get(name=DEMO_PROJECT)
    assert Label.objects.filter(project=project).count() == 6
    assert Item.objects.filter(project=project).count() == 414
    assert Item.objects.filter(project=project, status=Status.ACCEPTED).count() == 100
    assert Membership.objects.filter(project=project).count() == 2
    reviews = Review.objects.count()
    call_command("demo", force=True)
    assert Project.objects.count() == 2 and Item.objects.count() == 814 and Review.objects.count() == reviews


def test_the_movie_review_demo_opens_on_its_calibration_sample_of_real_llm_labels(db, django_user_model):
    call_command("demo", force=True)
    project = Project.objects.get(name=MR_PROJECT)
    items = Item.objects.filter(project=project)
    assert items.count() == 400 and not items.filter(status=Status.AUTO_ACCEPTED).exists()
    assert not any("gold" in extra for extra in items.values_list("extra", flat=True))  # the app never sees gold
    assert items.exclude(proposed_labels=[]).count() == 389 and set(items.values_list("source", flat=True)) == {
        Source.IMPORTED}
    flagged = items.filter(is_calibration=True)
    assert flagged.count() == calibration_size(target=MR_TARGET, available=389)
    assert set(flagged.values_list("status", flat=True)) == {Status.NEEDS_REVIEW}
    assert project.routing_state["phase"] == "calibrating"
    annotator = django_user_model.objects.get(username="annotator")
    item = queue_claim(project=project, user=annotator)
    # The queue holds the calibration sample and the sentences GPT-3.5 gave no label (those first: ambiguity 1).
    assert item.is_calibration or not item.proposed_labels
    waiting = items.filter(status=Status.NEEDS_REVIEW)
    assert waiting.count() == flagged.count() + 11 and not waiting.filter(is_calibration=False).exclude(
        proposed_labels=[]).exists()


def test_demo_logins_work(db, client):
    call_command("demo", force=True)
    assert client.login(username="lead", password="demo-lead")
    assert client.login(username="annotator", password="demo-annotator")


def test_demo_refuses_to_run_in_production_without_force(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="known passwords"):
        call_command("demo")
    assert not Project.objects.exists()
