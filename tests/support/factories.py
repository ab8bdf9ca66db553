"""Small factories for test data; plain functions over fixture files."""
import itertools

from django.contrib.auth import get_user_model

from annotation.models import Item, Label, Membership, Project, Role, Source, Status
from annotation.projects import services

_seq = itertools.count(1)


def make_user(username=None, password="pw-for-tests-1", **extra):
    username = username or f"user{next(_seq)}"
    user = get_user_model().objects.create_user(
        username=username, password=password, email=extra.pop("email", f"{username}@example.com"), **extra
    )
    user.raw_password = password
    return user


def make_project(*, lead, name=None, labels=("positive", "negative"), multi_label=False, **fields) -> Project:
    project = services.project_create(name=name or f"Project {next(_seq)}", lead=lead, multi_label=multi_label)
    if fields:
        Project.objects.filter(pk=project.pk).update(**fields)
        project.refresh_from_db()
    Label.objects.bulk_create(
        Label(project=project, name=name, hotkey=str(i + 1), order=i, label_words=[name])
        for i, name in enumerate(labels)
    )
    return project


def add_member(project, user, role=Role.ANNOTATOR) -> Membership:
    return Membership.objects.create(project=project, user=user, role=role)


def make_item(project, text=None, *, status=Status.NEEDS_REVIEW, proposed=("positive",), **fields) -> Item:
    return Item.objects.create(
        project=project,
        text=text or f"sample text {next(_seq)}",
        status=status,
        source=fields.pop("source", Source.LLM),
        proposed_labels=list(proposed),
        **fields,
    )
