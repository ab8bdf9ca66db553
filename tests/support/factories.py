"""Small factories for test data; plain functions over fixture files."""
import itertools

from django.contrib.auth import get_user_model

from annotation.models import AttributeDimension, ImportJob, Item, Label, Membership, Project, Role, Source, Status
from annotation.projects import invitations, services
from generation.models import GenerationJob, JobMode, LLMConnection
from synthstudio.webhooks.models import Delivery, Webhook

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


# Two clearly separable classes of text, for the selection model to learn.
POSITIVE = ["a wonderful, moving film", "great acting and a lovely story", "brilliant and joyful fun",
            "superb, warm and funny", "an excellent delight", "lovely, great and wonderful"]
NEGATIVE = ["a dull, tedious mess", "awful acting and a boring story", "terrible and painful to sit through",
            "a boring, stupid waste", "dreadful and dull", "tedious, awful and boring"]


def corpus(n_per_class=30):
    """(text, gold) pairs in two clearly separable classes."""
    rows = []
    for i in range(n_per_class):
        rows.append((f"{POSITIVE[i % len(POSITIVE)]} number {i}", "positive"))
        rows.append((f"{NEGATIVE[i % len(NEGATIVE)]} number {i}", "negative"))
    return rows


def flip(label):
    return "negative" if label == "positive" else "positive"


def make_pool(project, n_per_class=30, wrong=(0, 1, 2, 3), abstain=(4,)):
    """Proposed items labelled by a 'LLM' that is wrong on the ``wrong`` rows and abstains on ``abstain`` rows."""
    items = []
    for i, (text, gold) in enumerate(corpus(n_per_class)):
        proposed = [] if i in abstain else [flip(gold) if i in wrong else gold]
        items.append(make_item(project, text, status=Status.PROPOSED, proposed=proposed, extra={"gold": gold}))
    return items


def make_calibrated(project, n=20, *, target_accuracy=0.5, **policy):
    """A project whose calibration sample people have reviewed: ``n`` flagged items accepted with the LLM's label, in
    the project's first two labels. The default target is loose enough never to hold auto-accept back, for tests of
    the budget and threshold mechanics themselves; pass a stricter one to test the target."""
    names = list(project.labels.values_list("name", flat=True))[:2]
    for i in range(n):
        label = names[i % 2]
        words = POSITIVE if i % 2 == 0 else NEGATIVE
        make_item(project, f"{words[i % len(words)]} checked {i}", status=Status.ACCEPTED, proposed=(label,),
                  final_labels=[label], is_calibration=True, review_count=1)
    Project.objects.filter(pk=project.pk).update(target_accuracy=target_accuracy, **policy)
    project.refresh_from_db()
    return project


def make_world(*, project, lead) -> dict:
    """One of everything a URL can point at, in ``project``, keyed by the URL's path argument
    (for tests/support/visits.py: fill)."""
    item = make_item(project, "An item to look at")
    job = GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                       provider="offline", config={}, requested=1)
    import_job = ImportJob.objects.create(project=project, created_by=lead, file_name="x.csv", format="csv")
    invitation = invitations.invitation_create(project=project, user=lead, role=Role.ANNOTATOR)
    webhook = Webhook.objects.create(project=project, created_by=lead, url="https://example.com/hook",
                                     secret="whsec_world", events=["item.reviewed"])
    delivery = Delivery.objects.create(webhook=webhook, event="item.reviewed", event_id="world", payload={},
                                       status=Delivery.Status.FAILED, attempts=1)
    return {
        "project_id": project.id,
        "item_id": item.id,
        "membership_id": Membership.objects.get(project=project, role=Role.ANNOTATOR).id,
        "label_id": Label.objects.filter(project=project).first().id,
        "dimension_id": AttributeDimension.objects.create(project=project, name="topic", values=["a", "b"]).id,
        # The same converter name means a different model in each app.
        ("job_id", "generation"): job.id,
        "connection_id": LLMConnection.objects.create(project=project, name="local", base_url="http://127.0.0.1:9/v1",
                                                      model="m").id,
        ("job_id", "annotation"): import_job.id,
        "invitation_id": invitation.invitation.id,
        ("token", "annotation"): invitation.token,
        # Django's password reset link: an unknown account and a token that never checks out.
        "uidb64": "MA", ("token", "django"): "0-0",
        "webhook_id": webhook.id,
        "delivery_id": delivery.id,
    }


def review_with_gold(project, user, items):
    """A person reviews each item with its gold label (``extra["gold"]``), through the queue's own service."""
    from annotation.queue import services as queue

    for item in items:
        item.refresh_from_db()
        queue.item_review(project=project, item_id=item.pk, user=user, action="accept",
                          expected_version=item.version, labels=[item.extra["gold"]])
