"""Importing CSV and JSONL: validation with row numbers, all-or-nothing writes, duplicates, encodings, the pages."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from annotation.io import importing
from annotation.io.importing import ImportOptions, ImportRow, import_job_create, import_job_run, items_import
from annotation.models import ImportJob, Item, Review, ScoringRound, Status
from synthstudio.celery import app as celery_app
from synthstudio.lib import sql
from synthstudio.lib.text import content_hash
from tests.support.callbacks import queued_tasks
from tests.support.factories import make_item
from tests.support.runtime import wait_for

VISITORS = ["lead", "annotator", "outsider", "anonymous"]
NUL_REASON = "contains a NUL character (\\x00), which the database cannot store; remove it and import again"


@pytest.fixture(autouse=True)
def uploads_in_tmp(settings, tmp_path):
    """Uploads that no task consumes here must not pile up in the developer's MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"


def run_import(project, lead, path, **options):
    options.setdefault("format", importing.format_for(path.name))
    job = import_job_create(project=project, user=lead, file_name=path.name, options=ImportOptions(**options),
                            source_path=path)
    return import_job_run(job_id=job.pk)


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_rows_become_items_with_status_by_what_they_carry(tmp_path, project, lead):
    path = write(tmp_path, "in.csv", "text,gold,llm,conf,lang\n"
                                     "great film,positive,,,en\n"
                                     "\"awful, \"\"really\"\"\nbad\",,negative,0.75,en\n"
                                     "no idea,,,,fr\n")
    job = run_import(project, lead, path, label_column="gold", llm_label_column="llm", llm_confidence_column="conf")
    assert (job.state, job.rows_total, job.rows_imported, job.errors) == ("done", 3, 3, [])
    seed, llm, plain = Item.objects.filter(project=project).order_by("id")
    assert (seed.status, seed.final_labels, seed.extra) == (Status.ACCEPTED, ["positive"], {"lang": "en"})
    assert (llm.text, llm.status, llm.proposed_labels, llm.llm_confidence) == (
        'awful, "really"\nbad', Status.PROPOSED, ["negative"], 0.75)
    assert (plain.status, plain.proposed_labels, plain.final_labels) == (Status.PROPOSED, [], [])
    assert seed.content_hash == content_hash("great film")
    assert [i.idempotency_key for i in (seed, llm, plain)] == [f"import{job.pk}:{r}" for r in (2, 3, 4)]
    assert [i.provenance for i in (seed, plain)] == [{"import_job": job.pk, "row": 2}, {"import_job": job.pk, "row": 4}]
    assert job.created_by == lead
    # Creation overwrites nothing: the ImportJob is the record of the import, not a Review row per item.
    assert not Review.objects.filter(project=project).exists()


def test_an_import_that_stores_items_asks_for_a_scoring_round_once_it_commits(tmp_path, project, lead, monkeypatch):
    """Imported items are routed like generated ones: the round is queued after the import's transaction commits."""
    from annotation.selection import tasks

    queued = []
    monkeypatch.setattr(tasks.selection_round, "delay_on_commit", lambda pk, force=False: queued.append((pk, force)))
    job = run_import(project, lead, write(tmp_path, "in.csv", "text,llm\na fine film,positive\n"),
                     llm_label_column="llm")
    assert job.state == "done"
    assert queued == [(project.pk, True)]
    project.refresh_from_db()
    assert project.round_requested_at is not None
    # A file whose every row is a duplicate stores nothing and asks for nothing.
    queued.clear()
    project.__class__.objects.filter(pk=project.pk).update(round_requested_at=None)
    again = run_import(project, lead, write(tmp_path, "again.csv", "text,llm\na fine film,positive\n"),
                       llm_label_column="llm")
    assert (again.state, again.rows_imported, queued) == ("done", 0, [])


def test_jsonl_takes_label_lists_and_keeps_other_keys_as_extra(tmp_path, project, lead):
    project.multi_label = True
    project.save()
    lines = [{"text": "both", "labels": ["positive", "Negative"], "meta": {"k": [1, 2]}},
             {"text": "one", "labels": "positive"}, {"text": "none"}]
    path = write(tmp_path, "in.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    job = run_import(project, lead, path, label_column="labels")
    assert job.state == "done", job.errors
    both, one, none = Item.objects.filter(project=project).order_by("id")
    assert both.final_labels == ["positive", "negative"] and both.extra == {"meta": {"k": [1, 2]}}
    assert one.final_labels == ["positive"] and none.status == Status.PROPOSED


def test_a_bom_is_accepted(tmp_path, project, lead):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhello,positive\n")
    assert run_import(project, lead, path, label_column="label").state == "done"
    assert Item.objects.get(project=project).final_labels == ["positive"]


@pytest.mark.parametrize("raw,message", [
    ("text\ncaf\xe9 ok\n".encode("latin-1"), "not UTF-8: byte 0xe9 cannot be decoded (near row 2)"),
    ("text\nhello\n".encode("utf-16"), "The file is UTF-16"),
])
def test_other_encodings_fail_with_a_clear_message(tmp_path, project, lead, raw, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(raw)
    job = run_import(project, lead, path)
    assert job.state == "failed"
    assert message in job.errors[0]["message"]
    assert not Item.objects.filter(project=project).exists()


def test_every_bad_row_is_reported_and_nothing_is_written(tmp_path, project, lead):
    path = write(tmp_path, "bad.csv", "text,label,conf\n"
                                      "fine,positive,0.5\n"
                                      "   ,positive,\n"
                                      "x,happy,\n"
                                      "y,,1.5\n"
                                      "z,positive|negative,\n"
                                      "too,many,cells,here\n")
    job = run_import(project, lead, path, label_column="label", llm_confidence_column="conf")
    assert job.state == "failed"
    got = [(e["row"], e["field"], e["message"]) for e in job.errors]
    assert got == [
        (3, "text", "the text is empty"),
        (4, "label", "unknown label 'happy' (labels: positive, negative)"),
        (5, "conf", "confidence must be a number from 0 to 1, not '1.5'"),
        (6, "label", "several labels, but the project is single-label"),
        (7, "", "the row has 4 cells; the header has 3"),
    ]
    assert not Item.objects.filter(project=project).exists()


def test_bad_json_lines_are_reported_by_line(tmp_path, project, lead):
    path = write(tmp_path, "bad.jsonl", '{"text": "ok"}\n{"text": "broken"\n["a list"]\n{"text": 5}\n')
    job = run_import(project, lead, path)
    assert [(e["row"], e["field"]) for e in job.errors] == [(2, ""), (3, ""), (4, "text")]
    assert job.errors[0]["message"].startswith("bad JSON")
    assert "JSON object" in job.errors[1]["message"]


def test_a_nul_character_is_refused_before_the_database_sees_it(tmp_path, project, lead):
    path = write(tmp_path, "nul.jsonl", '{"text": "a\\u0000b"}\n{"text": "fine", "note": "\\\\u0000 is text"}\n')
    job = run_import(project, lead, path)
    assert [(e["row"], e["field"], e["message"]) for e in job.errors] == [(1, "text", NUL_REASON)]


def test_a_nul_in_any_csv_cell_is_a_row_error_naming_the_field(tmp_path, project, lead):
    path = write(tmp_path, "nul.csv", "text,label,note\n"
                                      "a\x00b,positive,\n"
                                      "fine,posi\x00tive,\n"
                                      "fine too,,x\x00\n"
                                      "clean,,\n"
                                      "\x00,,\x00\n")
    job = run_import(project, lead, path, label_column="label")
    assert job.state == "failed"
    assert [(e["row"], e["field"], e["message"]) for e in job.errors] == [
        (2, "text", NUL_REASON), (3, "label", NUL_REASON), (4, "note", NUL_REASON), (6, "text", NUL_REASON),
        (6, "note", NUL_REASON)]
    assert not Item.objects.filter(project=project).exists()


def test_a_nul_in_the_name_of_an_extra_column_is_refused_at_the_header(tmp_path, project, lead):
    path = write(tmp_path, "nul.csv", "text,n\x00ote\nfine,x\n")
    job = run_import(project, lead, path)
    assert job.errors == [{"row": 1, "field": "n\\x00ote", "message": f"The column name 'n\\x00ote' {NUL_REASON}."}]
    assert not Item.objects.filter(project=project).exists()


def test_a_nul_in_a_jsonl_value_names_the_field(tmp_path, project, lead):
    path = write(tmp_path, "nul.jsonl", '{"text": "fine", "meta": {"k": ["a\\u0000"]}}\n{"te\\u0000xt": "x", "text": "y"}\n')
    job = run_import(project, lead, path)
    assert [(e["row"], e["field"], e["message"]) for e in job.errors] == [(1, "meta", NUL_REASON),
                                                                          (2, "te\\x00xt", NUL_REASON)]


def test_a_nul_deep_inside_a_json_value_is_found_without_overflowing_the_stack(tmp_path, project, lead):
    deep = "[" * 900 + '"\\u0000"' + "]" * 900
    path = write(tmp_path, "deep.jsonl", '{"text": "x", "extra": ' + deep + "}\n")
    assert run_import(project, lead, path).errors == [{"row": 1, "field": "extra", "message": NUL_REASON}]


def test_a_missing_mapped_column_names_the_columns_there_are(tmp_path, project, lead):
    path = write(tmp_path, "in.csv", "sentence,label\nhello,positive\n")
    job = run_import(project, lead, path)
    assert job.state == "failed"
    assert job.errors == [{"row": 1, "field": "text",
                           "message": "No column named 'text' in the file; its columns are: sentence, label."}]


def test_errors_are_capped_but_counted(tmp_path, project, lead):
    path = write(tmp_path, "bad.csv", "text,label\n" + "x,nope\n" * 130)
    job = run_import(project, lead, path, label_column="label")
    assert len(job.errors) == importing.MAX_ERRORS + 1
    assert job.errors[-1]["message"] == "... and 30 more errors"


@pytest.mark.parametrize("policy,imported", [("skip", 2), ("keep", 4)])
def test_duplicate_texts_are_reported_and_skipped_or_kept(tmp_path, project, lead, policy, imported):
    existing = make_item(project, "Already Here")
    path = write(tmp_path, "in.csv", "text\nfirst\nalready  here\nFIRST\nsecond\n")
    job = run_import(project, lead, path, duplicates=policy)
    assert (job.state, job.duplicates, job.rows_imported) == ("done", 2, imported)
    assert job.duplicate_rows == [{"row": 3, "duplicate_of": f"item #{existing.pk}"},
                                  {"row": 4, "duplicate_of": "row 2"}]
    assert Item.objects.filter(project=project).count() == 1 + imported


def test_importing_the_same_file_twice_skips_every_row_and_caps_the_examples(tmp_path, project, lead, monkeypatch):
    monkeypatch.setattr(importing, "MAX_DUPLICATE_EXAMPLES", 2)
    path = write(tmp_path, "in.csv", "text\n" + "".join(f"text {i}\n" for i in range(5)) + "text 0\n")
    first = run_import(project, lead, path)
    assert (first.rows_imported, first.duplicates, first.duplicate_rows) == (5, 1, [
        {"row": 7, "duplicate_of": "row 2"}])
    again = run_import(project, lead, path)
    assert (again.state, again.rows_imported, again.duplicates) == ("done", 0, 6)
    assert [d["row"] for d in again.duplicate_rows] == [2, 3]
    assert Item.objects.filter(project=project).count() == 5


def test_an_unknown_file_name_is_refused_not_read_as_jsonl(tmp_path, project):
    with pytest.raises(importing.ImportFailed, match=r"Cannot tell the format of 'notes.txt'.*\.csv, \.jsonl, \.ndjson"):
        importing.format_for("notes.txt")
    assert [importing.format_for(n) for n in ("a.CSV", "b.jsonl", "c.ndjson")] == ["csv", "jsonl", "jsonl"]
    path = write(tmp_path, "notes.txt", '{"text": "hello"}\n')
    with pytest.raises(CommandError, match="Cannot tell the format"):
        call_command("import_items", str(path), project=project.id)
    call_command("import_items", str(path), project=project.id, format="jsonl")
    assert Item.objects.get(project=project).text == "hello"


@pytest.fixture
def eager_tasks():
    """Tasks run in this process when sent, so a test sees what the queued task does."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_an_upload_queues_its_own_task_once_committed(project, lead, eager_tasks, django_capture_on_commit_callbacks):
    options = ImportOptions(format="csv")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = import_job_create(project=project, user=lead, file_name="in.csv", options=options,
                                upload=SimpleUploadedFile("in.csv", b"text\nqueued by the service\n"))
        assert job.state == "queued"
    job.refresh_from_db()
    # Two callbacks: the import task, and the scoring round the finished import asks for to route its items.
    assert len(queued_tasks(callbacks)) == 2 and job.state == "done"
    assert Item.objects.get(project=project).text == "queued by the service"
    assert ScoringRound.objects.filter(project=project).exists()


def test_a_local_file_is_left_to_the_caller_to_run(tmp_path, project, lead, django_capture_on_commit_callbacks):
    path = write(tmp_path, "in.csv", "text\none\n")
    with django_capture_on_commit_callbacks() as callbacks:
        job = import_job_create(project=project, user=lead, file_name="in.csv", options=ImportOptions(format="csv"),
                                source_path=path)
    assert callbacks == [] and job.state == "queued"
    with pytest.raises(TypeError):
        import_job_create(project=project, user=lead, file_name="in.csv", options=ImportOptions(format="csv"))
    with pytest.raises(TypeError):
        import_job_create(project=project, user=lead, file_name="in.csv", options=ImportOptions(format="csv"),
                          source_path=path, upload=SimpleUploadedFile("in.csv", b"text\nx\n"))


def test_a_job_runs_once(tmp_path, project, lead):
    path = write(tmp_path, "in.csv", "text\none\n")
    job = import_job_create(project=project, user=lead, file_name="in.csv", options=ImportOptions(format="csv"),
                            source_path=path)
    assert import_job_run(job_id=job.pk).state == "done"
    assert import_job_run(job_id=job.pk) is None
    assert Item.objects.filter(project=project).count() == 1


def test_the_same_job_cannot_store_a_row_twice(project):
    rows = [ImportRow(row=2, text="once")]
    items_import(project=project, rows=rows, job_id=7)
    with pytest.raises(IntegrityError), transaction.atomic():
        items_import(project=project, rows=rows, job_id=7)
    assert Item.objects.filter(project=project).count() == 1


def test_big_files_are_written_in_batches_with_progress(tmp_path, project, monkeypatch):
    monkeypatch.setattr(importing, "BATCH", 3)
    monkeypatch.setattr(importing, "PROGRESS_EVERY", 3)
    seen = []
    rows = (ImportRow(row=i, text=f"text {i}") for i in range(10))
    assert items_import(project=project, rows=rows, on_progress=seen.append) == 10
    assert seen == [3, 6, 9]
    assert Item.objects.filter(project=project).count() == 10
    path = write(tmp_path, "in.csv", "text\n" + "".join(f"row {i}\n" for i in range(10)))
    report = importing.import_validate(project=project, path=path, options=ImportOptions(format="csv"),
                                       on_progress=seen.append)
    assert report.rows == 10 and seen[3:] == [3, 6, 9]


def test_formula_protection_from_our_export_is_undone(tmp_path, project, lead):
    path = write(tmp_path, "in.csv", "text\n'=SUM(A1)\n'tis fine\n'-5 degrees\n")
    run_import(project, lead, path)
    assert list(Item.objects.filter(project=project).values_list("text", flat=True)) == [
        "=SUM(A1)", "'tis fine", "-5 degrees"]


def test_label_cells_split_on_unescaped_bars():
    assert importing.split_labels("a | b|") == ["a", "b"]
    assert importing.split_labels(importing.join_labels(["x|y", "back\\slash"])) == ["x|y", "back\\slash"]


# --- the command ------------------------------------------------------------------------------------------------------

def test_command_imports_and_reports(tmp_path, project, lead, capsys):
    path = write(tmp_path, "in.csv", "text,label\nhello,positive\nhello,positive\n")
    call_command("import_items", str(path), project=project.id, label_column="label", user="lead")
    assert "Imported 1 of 2 rows" in capsys.readouterr().out
    assert path.exists()


def test_command_fails_with_row_errors(tmp_path, project, capsys):
    path = write(tmp_path, "in.jsonl", '{"text": ""}\n')
    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_items", str(path), project=project.id)
    assert "row 1: text: the text is empty" in capsys.readouterr().err


def test_command_reports_a_nul_in_a_cell_by_row_and_field(tmp_path, project, capsys):
    path = write(tmp_path, "in.csv", "text\nfine\nnul \x00 here\n")
    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_items", str(path), project=project.id)
    assert f"row 3: text: {NUL_REASON}" in capsys.readouterr().err
    assert not Item.objects.filter(project=project).exists()


# --- pages ------------------------------------------------------------------------------------------------------------

def upload(name="in.csv", content=b"text,label\nhello,positive\n"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("method", ["get", "post"])
def test_import_page_permissions(request, client, project, who, method, django_capture_on_commit_callbacks):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    url = reverse("import", args=[project.id])
    with django_capture_on_commit_callbacks():
        response = client.get(url) if method == "get" else client.post(url, {"file": upload(), "text_column": "text",
                                                                             "duplicates": "skip"})
    expected = {"lead": 200 if method == "get" else 302, "annotator": 403, "outsider": 404, "anonymous": 302}[who]
    assert response.status_code == expected
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", VISITORS)
def test_import_detail_permissions(request, client, project, lead, who):
    job = ImportJob.objects.create(project=project, created_by=lead, file_name="x.csv", format="csv")
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    response = client.get(reverse("import_detail", args=[project.id, job.id]))
    assert response.status_code == {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}[who]


def test_upload_queues_the_task_and_the_job_page_polls_until_done(client, lead, project, tmp_path,
                                                                   django_capture_on_commit_callbacks):
    client.force_login(lead)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("import", args=[project.id]), {
            "file": upload(), "text_column": "text", "label_column": "label", "duplicates": "skip"})
    job = ImportJob.objects.get(project=project)
    assert response["Location"] == reverse("import_detail", args=[project.id, job.id])
    upload_file = tmp_path / "media" / "imports" / f"{job.pk}-in.csv"
    assert len(callbacks) == 1 and upload_file.exists()
    status_url = reverse("import_detail", args=[project.id, job.id])
    polling = client.get(status_url, headers={"HX-Request": "true"}).content.decode()
    assert polling.startswith('<section id="import-status"') and 'hx-trigger="every 1s"' in polling
    import_job_run(job_id=job.pk)
    done = client.get(status_url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done and "1 of 1 rows imported" in done
    assert "<html" in client.get(status_url).content.decode()
    assert not upload_file.exists()
    assert Item.objects.get(project=project).final_labels == ["positive"]


def test_an_uploaded_csv_with_a_nul_in_a_cell_shows_the_row_error(client, lead, project,
                                                                    django_capture_on_commit_callbacks):
    client.force_login(lead)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(reverse("import", args=[project.id]), {
            "file": upload(content=b"text,label\nhello,positive\nbad\x00cell,positive\n"), "text_column": "text",
            "label_column": "label", "duplicates": "skip"})
    job = ImportJob.objects.get(project=project)
    import_job_run(job_id=job.pk)  # what the queued task does
    page = client.get(reverse("import_detail", args=[project.id, job.pk])).content.decode()
    assert "internal error" not in page and "which the database cannot store" in page
    job.refresh_from_db()
    assert job.errors == [{"row": 3, "field": "text", "message": NUL_REASON}]
    assert not Item.objects.filter(project=project).exists()


def orphan(project, lead, tmp_path, state):
    """An import a worker left in ``state`` when it died: nobody holds its lock; its upload is still there."""
    upload_file = tmp_path / "media" / importing.UPLOAD_DIR / "orphan.csv"
    upload_file.parent.mkdir(parents=True, exist_ok=True)
    upload_file.write_text("text\nx\n")
    return ImportJob.objects.create(project=project, created_by=lead, file_name="orphan.csv", format="csv",
                                    state=state, file_path=str(upload_file), rows_total=3), upload_file


@pytest.mark.parametrize("state", ["validating", "importing"])
def test_an_import_whose_worker_died_fails_when_its_page_is_read(client, lead, project, tmp_path, state):
    job, upload_file = orphan(project, lead, tmp_path, state)
    client.force_login(lead)
    page = client.get(reverse("import_detail", args=[project.id, job.id]), headers={"HX-Request": "true"})
    assert importing.WORKER_LOST in page.content.decode() and "hx-trigger" not in page.content.decode()
    job.refresh_from_db()
    assert (job.state, job.errors) == ("failed", [{"row": None, "field": "", "message": importing.WORKER_LOST}])
    assert job.finished_at is not None and not upload_file.exists()


def test_the_import_list_reaps_too_and_leaves_queued_and_finished_jobs_alone(client, lead, project, tmp_path):
    job, _ = orphan(project, lead, tmp_path, "importing")
    queued = ImportJob.objects.create(project=project, created_by=lead, file_name="q.csv", format="csv")
    done = ImportJob.objects.create(project=project, created_by=lead, file_name="d.csv", format="csv", state="done")
    client.force_login(lead)
    assert "Failed" in client.get(reverse("import", args=[project.id])).content.decode()
    assert [j.state for j in ImportJob.objects.filter(pk__in=[job.pk, queued.pk, done.pk]).order_by("pk")] == [
        "failed", "queued", "done"]


def test_an_import_with_a_live_worker_is_left_running(client, lead, project, tmp_path):
    job, upload_file = orphan(project, lead, tmp_path, "importing")
    client.force_login(lead)
    with sql.process_lock(name=importing.RUN_LOCK, key=job.pk) as held:
        assert held
        page = client.get(reverse("import_detail", args=[project.id, job.id]), headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in page.content.decode()
    job.refresh_from_db()
    assert job.state == "importing" and upload_file.exists()


def test_a_run_holds_its_lock_from_before_the_claim_to_the_end(tmp_path, project, lead, monkeypatch):
    path = write(tmp_path, "in.csv", "text\none\n")
    job = import_job_create(project=project, user=lead, file_name="in.csv", options=ImportOptions(format="csv"),
                            source_path=path)
    seen = []
    validate = importing.import_validate

    def spy(**kwargs):
        seen.append(sql.process_lock_held(name=importing.RUN_LOCK, key=job.pk))
        return validate(**kwargs)

    monkeypatch.setattr(importing, "import_validate", spy)
    with sql.process_lock(name=importing.RUN_LOCK, key=job.pk):
        assert import_job_run(job_id=job.pk) is None  # someone else runs it
    assert import_job_run(job_id=job.pk).state == "done"
    assert seen == [True] and not sql.process_lock_held(name=importing.RUN_LOCK, key=job.pk)


def test_upload_with_htmx_redirects_the_client(client, lead, project, django_capture_on_commit_callbacks):
    client.force_login(lead)
    with django_capture_on_commit_callbacks():
        response = client.post(reverse("import", args=[project.id]), {"file": upload(), "text_column": "text",
                                                                      "duplicates": "skip"},
                               headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == reverse("import_detail", args=[project.id, ImportJob.objects.get().id])


def test_import_page_lists_jobs_as_an_htmx_partial(client, lead, project):
    ImportJob.objects.create(project=project, created_by=lead, file_name="<b>evil</b>.csv", format="csv")
    client.force_login(lead)
    body = client.get(reverse("import", args=[project.id]), headers={"HX-Request": "true"}).content.decode()
    assert body.lstrip().startswith('<div id="import-jobs"') and "&lt;b&gt;evil&lt;/b&gt;.csv" in body
    # A queued import keeps the list polling; once it is done the list stops.
    assert 'hx-trigger="every 2s"' in body
    ImportJob.objects.update(state=ImportJob.State.DONE)
    done = client.get(reverse("import", args=[project.id]), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done


def test_an_oversized_upload_is_refused_with_the_limit(client, lead, project, settings):
    settings.MAX_UPLOAD_BYTES = 10
    client.force_login(lead)
    response = client.post(reverse("import", args=[project.id]), {"file": upload(), "text_column": "text",
                                                                  "duplicates": "skip"})
    assert response.status_code == 400
    assert "uploads are limited to 0.0 MB" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_real_worker_runs_an_uploaded_import(celery_worker_process, client, project, lead):
    client.force_login(lead)
    lines = "".join(json.dumps({"text": f"question {i}?", "label": "negative"}) + "\n" for i in range(50))
    response = client.post(reverse("import", args=[project.id]), {
        "file": upload("pool.jsonl", lines.encode()), "text_column": "text", "llm_label_column": "label",
        "duplicates": "skip"})
    assert response.status_code == 302
    job = ImportJob.objects.get(project=project)
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).state in ("done", "failed"), what="the import to end")
    job.refresh_from_db()
    assert (job.state, job.rows_imported) == ("done", 50), job.errors
    assert Item.objects.filter(project=project, status=Status.PROPOSED, proposed_labels=["negative"]).count() == 50
