import pytest
from django.core.management import CommandError, call_command

from annotation.models import Item, Label, Membership, Project, Review, Status


def test_demo_builds_a_project_once(db, capsys):
    call_command("demo", force=True)
    out = capsys.readouterr().out
    assert "log in as lead / demo-lead" in out and "log in as annotator / demo-annotator" in out
    project = Project.objects.get()
    assert Label.objects.filter(project=project).count() == 6
    assert Item.objects.filter(project=project).count() == 414
    assert Item.objects.filter(project=project, status=Status.ACCEPTED).count() == 100
    assert Membership.objects.filter(project=project).count() == 2
    reviews = Review.objects.count()
    call_command("demo", force=True)
    assert Project.objects.count() == 1 and Item.objects.count() == 414 and Review.objects.count() == reviews


def test_demo_logins_work(db, client):
    call_command("demo", force=True)
    assert client.login(username="lead", password="demo-lead")
    assert client.login(username="annotator", password="demo-annotator")


def test_demo_refuses_to_run_in_production_without_force(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="known passwords"):
        call_command("demo")
    assert not Project.objects.exists()
