"""Per-project, per-status counters (annotation/items/counts.py): equal to a fresh count after every kind of writer,
after concurrent reviews, imports and scoring rounds, and put right (and reported) by the reconciliation."""
import io
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import F

from annotation.io import exporting
from annotation.io.importing import ImportOptions, import_job_create, import_job_run
from annotation.io.selectors import export_summary
from annotation.items import tasks
from annotation.items.counts import Drift, item_counts, item_counts_fold, item_counts_reconcile
from annotation.items.services import ItemChange, items_change
from annotation.models import Item, ItemCount, Project, Status
from annotation.projects.selectors import project_status_counts
from annotation.queue import services as queue
from annotation.selection.rounds import selection_run_round
from tests.support.concurrency import at_once
from tests.support.factories import add_member, make_item, make_pool, make_project, make_user


def fresh(project) -> dict[str, int]:
    """What the counters must say: a count of the project's live items per status, every status present."""
    counts = {status: 0 for status in Status.values}
    counts.update(Counter(Item.objects.filter(project_id=project.pk, archived_at__isnull=True)
                          .values_list("status", flat=True)))
    return counts


def import_csv(project, lead, tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("text,gold\n" + "".join(f"{text},{gold}\n" for text, gold in rows), encoding="utf-8")
    job = import_job_create(project=project, user=lead, file_name=name, options=ImportOptions(
        format="csv", label_column="gold"), source_path=path)
    return import_job_run(job_id=job.pk)


def test_a_new_project_counts_zero_of_every_status(project):
    assert item_counts(project_id=project.pk) == dict.fromkeys(Status.values, 0)


def test_counters_follow_every_kind_of_item_write(project, lead, annotator, tmp_path):
    other = Project.objects.exclude(pk=project.pk).get()
    items = [make_item(project, status=Status.NEEDS_REVIEW) for _ in range(5)]
    Item.objects.bulk_create([Item(project=project, text=f"bulk {i}", status=Status.PROPOSED) for i in range(4)])
    make_item(other, status=Status.PROPOSED)
    assert item_counts(project_id=project.pk) == fresh(project) != dict.fromkeys(Status.values, 0)

    # A review (item_transition), several changes at once (items_change), an archive, a plain UPDATE, a delete.
    claimed = queue.queue_claim(project=project, user=annotator)
    queue.item_review(project=project, item_id=claimed.pk, user=annotator, action="reject", reason="other",
                      expected_version=claimed.version)
    proposed = list(Item.objects.filter(project=project, status=Status.PROPOSED).values_list("pk", flat=True))
    items_change(project_id=project.pk, item_ids=proposed[:2],
                 decide=lambda item: ItemChange(action="auto_accept", to=Status.AUTO_ACCEPTED))
    Item.objects.filter(pk=items[1].pk).update(archived_at=F("created_at"))
    Item.objects.filter(pk=items[2].pk).update(status=Status.AUTO_ACCEPTED)
    Item.objects.filter(pk=items[3].pk).delete()
    import_csv(project, lead, tmp_path, "in.csv", [("an imported text", "positive"), ("another one", "")])

    assert item_counts(project_id=project.pk) == fresh(project)
    assert item_counts(project_id=other.pk) == fresh(other)
    assert fresh(project)[Status.AUTO_ACCEPTED] == 3
    # Bringing an archived item back counts it again.
    Item.objects.filter(pk=items[1].pk).update(archived_at=None)
    assert item_counts(project_id=project.pk) == fresh(project)


def test_a_write_that_rolls_back_leaves_the_counters_as_they_were(project):
    make_item(project)
    before = item_counts(project_id=project.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        make_item(project, status=Status.PROPOSED)
        Item.objects.filter(project=project).update(status=Status.AUTO_ACCEPTED)
        raise RuntimeError("the writer failed half way")
    assert item_counts(project_id=project.pk) == before == fresh(project)


def test_the_pages_counts_come_from_the_counters(project):
    """The project page, the dashboard (both through project_status_counts) and the export page read the counters,
    not the items: a counter row changed behind their back shows."""
    make_item(project, status=Status.ACCEPTED, final_labels=["positive"])
    make_item(project, status=Status.NEEDS_REVIEW)
    assert project_status_counts(project=project) == fresh(project)
    assert exporting.export_count(project=project, filters=exporting.ExportFilters(verified_only=True)) == 1
    ItemCount.objects.create(project=project, status=Status.ACCEPTED, n=40)
    assert project_status_counts(project=project)[Status.ACCEPTED] == 41
    assert exporting.export_count(project=project, filters=exporting.ExportFilters(verified_only=True)) == 41
    assert exporting.export_count(project=project, filters=exporting.ExportFilters(
        statuses=(Status.ACCEPTED, Status.NEEDS_REVIEW))) == 42
    # A source filter cannot be answered from per-status counters: it counts the items.
    assert exporting.export_count(project=project, filters=exporting.ExportFilters(source="llm")) == 2
    # The export page's summary by status.
    summary = export_summary(project=project, filters=exporting.ExportFilters(verified_only=True))
    assert (summary.included, summary.left_out) == (41, 1)
    assert export_summary(project=project, filters=exporting.ExportFilters(source="llm")).included == 2


def test_reconciliation_finds_drift_corrects_it_and_reports_it(project, caplog):
    for status in (Status.NEEDS_REVIEW, Status.NEEDS_REVIEW, Status.ACCEPTED):
        make_item(project, status=status)
    # Drift as a bug or a hand edit would leave it: one status overcounted, another lost.
    ItemCount.objects.create(project=project, status=Status.NEEDS_REVIEW, n=3)
    ItemCount.objects.filter(project=project, status=Status.ACCEPTED).delete()
    assert item_counts(project_id=project.pk) != fresh(project)

    drift = item_counts_reconcile(project_id=project.pk)

    assert sorted(drift, key=lambda d: d.status) == [Drift(project.pk, Status.ACCEPTED, 0, 1),
                                                     Drift(project.pk, Status.NEEDS_REVIEW, 5, 2)]
    assert "counted 5, recounted 2 (-3)" in caplog.text
    assert item_counts(project_id=project.pk) == fresh(project)
    assert ItemCount.objects.filter(project=project).count() == 2  # folded: one row per status
    assert item_counts_reconcile(project_id=project.pk) == []


def test_the_command_and_the_task_reconcile_every_project_and_drop_rows_of_deleted_ones(project):
    make_item(project)
    ItemCount.objects.create(project=project, status=Status.FILTERED, n=-2)
    ItemCount.objects.create(project_id=987654, status=Status.PROPOSED, n=7)  # a project deleted long ago
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("item_counts_reconcile", "--check", stdout=out)
    assert exited.value.code == 1
    assert f"drift: project {project.pk}, filtered: counted -2, recounted 0 (+2); corrected" in out.getvalue()
    assert not ItemCount.objects.filter(project_id=987654).exists()
    assert tasks.item_counts_reconcile_task() == {"projects": "all", "drifted": 0, "drift": []}
    out = io.StringIO()
    call_command("item_counts_reconcile", "--project", str(project.pk), "--check", stdout=out)
    assert "0 counter(s) drifted" in out.getvalue()


def test_folding_keeps_the_sums(project):
    for _ in range(30):
        make_item(project, status=Status.PROPOSED)
    Item.objects.filter(project=project).update(status=Status.NEEDS_REVIEW)
    before = item_counts(project_id=project.pk)
    item_counts_fold(project_id=project.pk)
    assert item_counts(project_id=project.pk) == before == fresh(project)
    assert ItemCount.objects.filter(project=project).count() == 1


def test_counters_equal_a_fresh_count_after_concurrent_reviews_imports_and_a_round(transactional_db, tmp_path):
    lead = make_user("lead")
    project = make_project(lead=lead)
    users = [make_user(f"annotator{i}") for i in range(3)]
    for user in users:
        add_member(project, user)
    make_pool(project, n_per_class=20)
    for i in range(24):
        make_item(project, f"waiting for review {i}", ambiguity=i / 24)

    def drain(user):
        done = 0
        while done < 10 and (item := queue.queue_claim(project=project, user=user)) is not None:
            # The round may route an item the LLM abstained on, which has no label to accept as it is.
            queue.item_review(project=project, item_id=item.pk, user=user, action="accept", labels=["positive"],
                              expected_version=item.version)
            done += 1
        return done

    def importing(k):
        return import_csv(project, lead, tmp_path, f"in{k}.csv",
                          [(f"imported text {k}-{i}", "positive" if i % 2 else "") for i in range(40)]).state

    results = at_once(*(lambda user=user: drain(user) for user in users),
                      lambda: importing(1), lambda: importing(2),
                      lambda: selection_run_round(project=project, trigger="manual"))
    assert results[3:5] == ["done", "done"]
    assert sum(results[:3]) > 0
    assert item_counts(project_id=project.pk) == fresh(project)
    assert fresh(project)[Status.ACCEPTED] >= 40  # the imports' gold rows and the reviews really happened
    assert item_counts_reconcile(project_id=project.pk) == []


def test_a_backup_without_the_counters_restores_them_from_its_items(project, tmp_path):
    """The README's dumpdata leaves the counters out: loading the items rebuilds them (and loading both would count
    every item twice, which the reconciliation finds)."""
    for status in (Status.PROPOSED, Status.NEEDS_REVIEW, Status.NEEDS_REVIEW):
        make_item(project, status=status)
    expected = fresh(project)
    backup = tmp_path / "items.json"
    call_command("dumpdata", "annotation.item", "--exclude", "annotation.itemcount", "-o", str(backup))
    Item.objects.filter(project=project).delete()
    ItemCount.objects.filter(project=project).delete()
    call_command("loaddata", str(backup), verbosity=0)
    assert fresh(project) == expected
    assert item_counts(project_id=project.pk) == expected
    assert item_counts_reconcile(project_id=project.pk) == []
