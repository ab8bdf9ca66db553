"""Per-project counters by status, source, labelling and scoring (annotation/items/counts.py): equal to a fresh count
after every kind of writer, after concurrent reviews, imports and scoring rounds, rebuilt from the items by migration
0018, and put right (and reported) by the reconciliation."""
import io
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, F, Q
from django.utils import timezone

from annotation.io import exporting
from annotation.io.importing import ImportOptions, import_job_create, import_job_run
from annotation.io.selectors import export_summary
from annotation.items import tasks
from annotation.items.counts import Drift, item_counts, item_counts_detail, item_counts_fold, item_counts_reconcile
from annotation.items.services import ItemChange, items_change
from annotation.models import Item, ItemCount, Project, Source, Status
from annotation.projects.selectors import project_overview, project_status_counts
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


def fresh_cells(project) -> dict[tuple, int]:
    """What the detailed counters must say, counted in Python from the items' own values: live items per (status,
    imported, with an LLM proposal, with a routing score)."""
    rows = Item.objects.filter(project_id=project.pk, archived_at__isnull=True).values_list(
        "status", "source", "proposed_labels", "ambiguity")
    return dict(Counter((status, source == Source.IMPORTED, proposed != [], ambiguity is not None)
                        for status, source, proposed, ambiguity in rows))


def exact(project) -> bool:
    """Both reads of the counters equal a fresh count of the project's items."""
    return (item_counts(project_id=project.pk) == fresh(project)
            and item_counts_detail(project_id=project.pk).cells == fresh_cells(project))


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
    # What moves an item between the other cells: a score (a round), a proposal taken away (a rename) or given (a
    # labelling job), a score replaced by another (no cell moves), the source rewritten.
    Item.objects.filter(project=project, status=Status.NEEDS_REVIEW).update(ambiguity=0.5)
    Item.objects.filter(pk=items[0].pk).update(proposed_labels=[])
    Item.objects.filter(project=project, source=Source.IMPORTED, proposed_labels=[]).update(
        proposed_labels=["positive"])
    Item.objects.filter(project=project, ambiguity__isnull=False).update(ambiguity=F("ambiguity") / 2)
    Item.objects.filter(pk=items[4].pk).update(source=Source.IMPORTED)

    assert exact(project) and exact(other)
    assert fresh(project)[Status.AUTO_ACCEPTED] == 3
    cells = fresh_cells(project)
    assert {imported for _, imported, _, _ in cells} == {True, False}
    assert {labelled for _, _, labelled, _ in cells} == {True, False}
    assert {scored for _, _, _, scored in cells} == {True, False}
    # Bringing an archived item back counts it again.
    Item.objects.filter(pk=items[1].pk).update(archived_at=None)
    assert exact(project)


def test_a_write_that_rolls_back_leaves_the_counters_as_they_were(project):
    make_item(project)
    before = item_counts(project_id=project.pk), item_counts_detail(project_id=project.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        make_item(project, status=Status.PROPOSED)
        Item.objects.filter(project=project).update(status=Status.AUTO_ACCEPTED, ambiguity=0.1)
        raise RuntimeError("the writer failed half way")
    assert (item_counts(project_id=project.pk), item_counts_detail(project_id=project.pk)) == before
    assert exact(project)


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
    # The project's overview: its status counts and its pipeline's counts by source, labelling and scoring.
    ItemCount.objects.create(project=project, status=Status.PROPOSED, imported=True, labelled=False, scored=True,
                             n=7)
    overview = project_overview(project=project)
    assert overview.counts[Status.PROPOSED] == 7 and overview.total == 49
    assert "7 imported, 42 generated" in overview.steps[1].summary
    assert "2 with a proposed label, 7 without" in overview.steps[2].summary
    assert "7 items scored" in overview.steps[3].summary


def pipeline_counted(project) -> dict[str, int]:
    """The overview's pipeline counts as it made them before the counters had these cells: one pass over the items."""
    no_proposal = Q(proposed_labels=[])
    return Item.objects.filter(project=project, archived_at__isnull=True).aggregate(
        total=Count("id"),
        imported=Count("id", filter=Q(source=Source.IMPORTED)),
        generated=Count("id", filter=~Q(source=Source.IMPORTED) & ~Q(status=Status.FILTERED)),
        unlabelled=Count("id", filter=no_proposal & Q(status=Status.PROPOSED)),
        labelled=Count("id", filter=~no_proposal),
        scored=Count("id", filter=Q(ambiguity__isnull=False)),
    )


def test_the_overview_shows_what_a_count_of_the_items_shows(project):
    for k, (status, source, proposed, ambiguity) in enumerate([
        (Status.PROPOSED, Source.IMPORTED, (), None), (Status.PROPOSED, Source.LLM, ("positive",), None),
        (Status.PROPOSED, Source.AUGMENT, (), None), (Status.NEEDS_REVIEW, Source.IMPORTED, ("positive",), 0.7),
        (Status.NEEDS_REVIEW, Source.LLM, (), 0.9), (Status.FILTERED, Source.LLM, ("negative",), None),
        (Status.FILTERED, Source.IMPORTED, (), None), (Status.ACCEPTED, Source.LLM, ("positive",), 0.2),
        (Status.AUTO_ACCEPTED, Source.AUGMENT, ("negative",), 0.01), (Status.REJECTED, Source.IMPORTED, (), 0.5),
    ] * 2):
        make_item(project, status=status, source=source, proposed=proposed, ambiguity=ambiguity,
                  archived_at=timezone.now() if k >= 18 else None)
    overview = project_overview(project=project)
    counted = pipeline_counted(project)
    assert counted == {"total": 18, "imported": 7, "generated": 9, "unlabelled": 4, "labelled": 9, "scored": 8}
    assert overview.total == counted["total"]
    assert (f"{counted['imported']} imported, {counted['generated']} generated, 4 held back by filters"
            in overview.steps[1].summary)
    assert (f"{counted['labelled']} with a proposed label, {counted['unlabelled']} without"
            in overview.steps[2].summary)
    assert f"{counted['scored']} items scored" in overview.steps[3].summary


def test_reconciliation_finds_drift_corrects_it_and_reports_it(project, caplog):
    for status in (Status.NEEDS_REVIEW, Status.NEEDS_REVIEW, Status.ACCEPTED):
        make_item(project, status=status)
    # Drift as a bug or a hand edit would leave it: one status overcounted, another lost.
    ItemCount.objects.create(project=project, status=Status.NEEDS_REVIEW, labelled=True, n=3)
    ItemCount.objects.filter(project=project, status=Status.ACCEPTED).delete()
    assert item_counts(project_id=project.pk) != fresh(project)

    drift = item_counts_reconcile(project_id=project.pk)

    assert sorted(drift, key=lambda d: d.status) == [
        Drift(project.pk, Status.ACCEPTED, imported=False, labelled=True, scored=False, counted=0, actual=1),
        Drift(project.pk, Status.NEEDS_REVIEW, imported=False, labelled=True, scored=False, counted=5, actual=2)]
    assert "needs_review (not imported, labelled, unscored): counted 5, recounted 2 (-3)" in caplog.text
    assert exact(project)
    assert ItemCount.objects.filter(project=project).count() == 2  # folded: one row per cell
    assert item_counts_reconcile(project_id=project.pk) == []


def test_reconciliation_corrects_cells_whose_drift_cancels_out_within_a_status(project):
    """Items counted as unscored although a round scored them: every status count is right, the breakdown is not."""
    make_item(project, status=Status.NEEDS_REVIEW, ambiguity=0.4)
    make_item(project, status=Status.NEEDS_REVIEW)
    ItemCount.objects.bulk_create([
        ItemCount(project=project, status=Status.NEEDS_REVIEW, labelled=True, scored=True, n=-1),
        ItemCount(project=project, status=Status.NEEDS_REVIEW, labelled=True, scored=False, n=1)])
    assert item_counts(project_id=project.pk) == fresh(project)
    assert item_counts_detail(project_id=project.pk).count(scored=True) == 0

    drift = item_counts_reconcile(project_id=project.pk)

    assert sorted((d.scored, d.counted, d.actual) for d in drift) == [(False, 2, 1), (True, 0, 1)]
    assert exact(project)
    assert item_counts_detail(project_id=project.pk).count(scored=True) == 1


def test_the_command_and_the_task_reconcile_every_project_and_drop_rows_of_deleted_ones(project):
    make_item(project)
    ItemCount.objects.create(project=project, status=Status.FILTERED, n=-2)
    ItemCount.objects.create(project_id=987654, status=Status.PROPOSED, n=7)  # a project deleted long ago
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("item_counts_reconcile", "--check", stdout=out)
    assert exited.value.code == 1
    assert (f"drift: project {project.pk}, filtered (not imported, unlabelled, unscored): counted -2, recounted 0 "
            "(+2); corrected") in out.getvalue()
    assert not ItemCount.objects.filter(project_id=987654).exists()
    assert tasks.item_counts_reconcile_task() == {"projects": "all", "drifted": 0, "drift": []}
    out = io.StringIO()
    call_command("item_counts_reconcile", "--project", str(project.pk), "--check", stdout=out)
    assert "0 counter(s) drifted" in out.getvalue()


def test_folding_keeps_the_sums(project):
    for _ in range(30):
        make_item(project, status=Status.PROPOSED)
    Item.objects.filter(project=project).update(status=Status.NEEDS_REVIEW)
    half = list(Item.objects.filter(project=project).values_list("pk", flat=True)[:15])
    Item.objects.filter(pk__in=half).update(ambiguity=0.3)
    before = item_counts_detail(project_id=project.pk)
    item_counts_fold(project_id=project.pk)
    assert item_counts_detail(project_id=project.pk) == before
    assert exact(project)
    assert ItemCount.objects.filter(project=project).count() == len(fresh_cells(project)) == 2


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
    assert exact(project)
    assert fresh(project)[Status.ACCEPTED] >= 40  # the imports' gold rows and the reviews really happened
    # The imports, the round's scores and the LLM's abstentions all happened: every dimension has both values.
    detail = item_counts_detail(project_id=project.pk)
    assert all(detail.count(**{name: value}) > 0 for name in ("imported", "labelled", "scored")
               for value in (True, False))
    assert item_counts_reconcile(project_id=project.pk) == []


def test_a_backup_without_the_counters_restores_them_from_its_items(project, tmp_path):
    """The README's dumpdata leaves the counters out: loading the items rebuilds them (and loading both would count
    every item twice, which the reconciliation finds)."""
    for status in (Status.PROPOSED, Status.NEEDS_REVIEW, Status.NEEDS_REVIEW):
        make_item(project, status=status, ambiguity=0.2 if status == Status.NEEDS_REVIEW else None)
    expected = fresh(project), fresh_cells(project)
    backup = tmp_path / "items.json"
    call_command("dumpdata", "annotation.item", "--exclude", "annotation.itemcount", "-o", str(backup))
    Item.objects.filter(project=project).delete()
    ItemCount.objects.filter(project=project).delete()
    call_command("loaddata", str(backup), verbosity=0)
    assert (fresh(project), fresh_cells(project)) == expected
    assert exact(project)
    assert item_counts_reconcile(project_id=project.pk) == []


def _migrate(to: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(to)


def test_migration_0018_rebuilds_every_projects_counters_from_its_items_and_goes_back(transactional_db):
    """Items written under 0015's per-status counters (both ways through the migration), then counted by cell."""
    project = make_project(lead=make_user("lead"))
    other = make_project(lead=make_user("other-lead"), name="Other")
    make_item(project, status=Status.NEEDS_REVIEW, ambiguity=0.4)
    make_item(other, status=Status.PROPOSED, proposed=(), source=Source.IMPORTED)
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        _migrate([("annotation", "0017_calibration_index")])
        # 0015's triggers are back and count per status only; the items change under them.
        make_item(project, status=Status.ACCEPTED, final_labels=["positive"])
        Item.objects.filter(project=project, status=Status.NEEDS_REVIEW).update(ambiguity=None)
        make_item(other, status=Status.FILTERED, ambiguity=0.9)
        with connection.cursor() as cursor:
            cursor.execute("SELECT project_id, status, sum(n) FROM annotation_itemcount GROUP BY 1, 2")
            per_status = {(p, s): int(n) for p, s, n in cursor.fetchall() if n}
        assert per_status == {(p.pk, s): n for p in (project, other) for s, n in fresh(p).items() if n}
    finally:
        _migrate(latest)
    assert exact(project) and exact(other)
    assert item_counts_detail(project_id=other.pk).count(imported=True, labelled=False) == 1
    assert item_counts_reconcile() == []
    # The new triggers count what comes after.
    Item.objects.filter(project=project).update(ambiguity=0.1)
    assert exact(project)
