"""Each event is published where it happens, with what a pipeline needs to act on it: a job's end, an import's end, a
scoring round, the certificate reached, and an LLM found unreliable (published once, when the state changes)."""
import pytest

from annotation.io.importing import ImportOptions, import_job_create, import_job_run
from annotation.models import Item, Project, Status
from annotation.selection import selection_run_round
from generation.models import GenerationJob, JobMode
from generation.services import job_cancel
from synthstudio.webhooks import services
from synthstudio.webhooks.models import Delivery
from tests.support.factories import make_item, make_pool, review_with_gold

ALL_EVENTS = ["item.reviewed", "job.finished", "round.finished", "target.reached", "llm.unreliable",
              "import.finished"]


@pytest.fixture
def every_event(project, lead, receiver, allow_loopback):
    return services.webhook_save(project=project, user=lead, url=receiver.url, events=ALL_EVENTS)


def announced(event):
    return [d.payload["data"] for d in Delivery.objects.filter(event=event).order_by("id")]


def test_a_cancelled_job_is_announced(project, lead, every_event, django_capture_on_commit_callbacks):
    job = GenerationJob.objects.create(project=project, created_by=lead, mode=JobMode.LABEL_CONDITIONED,
                                       provider="offline", config={}, requested=5)
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=job, user=lead)
        job_cancel(job=job, user=lead)  # already over: not announced twice
    [data] = announced("job.finished")
    assert (data["job"], data["status"], data["requested"], data["produced"]) == (job.pk, "cancelled", 5, 0)
    assert data["finished_at"]


def test_an_import_is_announced_when_it_ends(project, lead, every_event, tmp_path, settings,
                                              django_capture_on_commit_callbacks):
    settings.MEDIA_ROOT = tmp_path / "media"
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("text,gold\nlovely film,positive\nawful film,negative\n")
    bad.write_text("text,gold\nlovely film,no-such-label\n")
    with django_capture_on_commit_callbacks(execute=True):
        for path in (good, bad):
            job = import_job_create(project=project, user=lead, file_name=path.name, source_path=path,
                                    options=ImportOptions(format="csv", label_column="gold"))
            import_job_run(job_id=job.pk)
    done, failed = announced("import.finished")
    assert (done["state"], done["file_name"], done["rows_imported"], done["errors"]) == ("done", "good.csv", 2, 0)
    assert (failed["state"], failed["rows_imported"], failed["errors"]) == ("failed", 0, 1)


def calibration_items(project):
    return list(Item.objects.filter(project=project, is_calibration=True).order_by("id"))


def test_rounds_and_the_certificate_are_announced(project, annotator, every_event,
                                                  django_capture_on_commit_callbacks):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    Project.objects.filter(pk=project.pk).update(target_accuracy=0.95, audit_rate=0.0)
    with django_capture_on_commit_callbacks(execute=True):
        first = selection_run_round(project=project)
    [data] = announced("round.finished")
    assert (data["round"], data["phase"], data["items_scored"]) == (first.pk, "calibrating", 120)
    assert announced("target.reached") == []
    # People review what waits (the calibration sample first), rounds route the rest, until the target is reached.
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            review_with_gold(project, annotator, Item.objects.filter(project=project, status=Status.NEEDS_REVIEW))
            last = selection_run_round(project=project)
    assert Project.objects.get(pk=project.pk).routing_state["phase"] == "reached"
    [reached] = announced("target.reached")  # once, by the round that reached it
    assert reached["target"] == 0.95 and reached["lower_bound"] >= 0.95 and reached["estimate"] >= 0.95
    assert [d["phase"] for d in announced("round.finished") if d["round"] == reached["round"]] == ["reached"]
    # Another round that stays at "reached" says so in round.finished only.
    with django_capture_on_commit_callbacks(execute=True):
        selection_run_round(project=project)
    assert len(announced("target.reached")) == 1
    assert [d["phase"] for d in announced("round.finished")][-1] == "reached" and last is not None


def test_an_unreliable_llm_is_announced(project, annotator, every_event, django_capture_on_commit_callbacks):
    words = ["table", "river", "window", "paper", "stone", "cloud", "garden", "engine"]
    for i in range(120):
        gold = "positive" if (i * 7) % 11 < 5 else "negative"
        llm = gold if i % 10 < 3 else ("negative" if gold == "positive" else "positive")
        make_item(project, f"the {words[i % 8]} and the {words[(i * 3) % 8]} {i}", status=Status.PROPOSED,
                  proposed=(llm,), extra={"gold": gold})
    Project.objects.filter(pk=project.pk).update(target_accuracy=0.95, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    with django_capture_on_commit_callbacks(execute=True):
        selection_run_round(project=project)
    assert Project.objects.get(pk=project.pk).routing_state["phase"] == "unreliable"
    [data] = announced("llm.unreliable")
    assert data["llm"]["right"] < 0.5 * data["llm"]["n"] and data["target"] == 0.95
