"""Hostile files for the importers (fuzzed with hypothesis, binary, 10k columns, JSON nested 100k deep, huge forms):
each ends in a clear verdict that names the row and the reason, never a server error, in bounded memory.

Wrong encodings (Latin-1, UTF-16) and oversized uploads are covered in tests/annotation/io/test_import.py
(``test_other_encodings_fail_with_a_clear_message``, ``test_an_oversized_upload_is_refused_with_the_limit``).
"""
import csv
import io
import json
import tracemalloc

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotation.io.importing import ImportOptions, import_job_create, import_job_run
from annotation.models import ImportJob, Item
from tests.support.factories import make_item

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def run(project, lead, tmp_path, name: str, data: bytes, **options) -> ImportJob:
    path = tmp_path / name
    path.write_bytes(data)
    options.setdefault("format", "csv" if name.endswith(".csv") else "jsonl")
    job = import_job_create(project=project, user=lead, file_name=name, options=ImportOptions(**options),
                            source_path=path)
    return import_job_run(job_id=job.pk)  # an internal error is re-raised here and fails the test


def assert_clear_verdict(job: ImportJob, *, rows_known: bool):
    assert job.state in (ImportJob.State.DONE, ImportJob.State.FAILED)
    if job.state == ImportJob.State.FAILED:
        assert job.errors, "a failed import must say why"
        for error in job.errors:
            assert error["message"].strip()
            assert "internal error" not in error["message"]
            if rows_known:
                assert isinstance(error["row"], int) and error["row"] >= 1, error
        assert Item.objects.filter(provenance__import_job=job.pk).count() == 0  # all or nothing


@FUZZ
@given(data=st.binary(max_size=2000), name=st.sampled_from(["f.csv", "f.jsonl"]))
def test_arbitrary_bytes_get_a_clear_verdict(tmp_path, project, lead, data, name):
    assert_clear_verdict(run(project, lead, tmp_path, name, data, label_column=""), rows_known=False)


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=40), min_size=1, max_size=4), max_size=8))
def test_any_csv_under_a_good_header_gets_row_numbered_errors(tmp_path, project, lead, rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label", "llm", "confidence"])
    writer.writerows(rows)
    job = run(project, lead, tmp_path, "f.csv", out.getvalue().encode(), label_column="label",
              llm_label_column="llm", llm_confidence_column="confidence")
    assert_clear_verdict(job, rows_known=bool(rows))


@FUZZ
@given(lines=st.lists(json_values, min_size=1, max_size=8))
def test_any_json_lines_get_row_numbered_errors(tmp_path, project, lead, lines):
    data = "".join(json.dumps(v) + "\n" for v in lines).encode()
    job = run(project, lead, tmp_path, "f.jsonl", data, label_column="label", llm_confidence_column="confidence")
    assert_clear_verdict(job, rows_known=True)


@pytest.mark.parametrize("line", [
    "[" * 100_000 + "]" * 100_000,
    '{"text": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}",
])
def test_json_nested_100k_deep_is_refused_naming_the_line(tmp_path, project, lead, line):
    data = ('{"text": "a fine first line"}\n' + line + "\n").encode()
    tracemalloc.start()
    job = run(project, lead, tmp_path, "deep.jsonl", data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert job.state == ImportJob.State.FAILED
    assert job.errors[0]["row"] == 2 and "nested" in job.errors[0]["message"]
    assert peak < 64 * 2**20


def test_a_csv_with_ten_thousand_columns_imports_in_bounded_memory(tmp_path, project, lead):
    header = ["text"] + [f"c{i}" for i in range(9_999)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for r in range(20):
        writer.writerow([f"row {r} text"] + [f"v{r}.{i}" for i in range(9_999)])
    tracemalloc.start()
    job = run(project, lead, tmp_path, "wide.csv", out.getvalue().encode())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert_clear_verdict(job, rows_known=True)
    assert job.state == ImportJob.State.DONE and job.rows_imported == 20
    assert len(Item.objects.filter(project=project).first().extra) == 9_999
    assert peak < 128 * 2**20


def test_a_ragged_wide_row_names_its_row(tmp_path, project, lead):
    data = ("text,label\nfine,positive\n" + ",".join(["x"] * 10_000) + "\n").encode()
    job = run(project, lead, tmp_path, "ragged.csv", data, label_column="label")
    assert job.state == ImportJob.State.FAILED
    assert job.errors == [{"row": 3, "field": "", "message": "the row has 10000 cells; the header has 2"}]


def test_a_huge_form_post_is_refused_not_a_server_error(client, project, annotator, settings):
    item = make_item(project)
    client.force_login(annotator)
    response = client.post(reverse("queue_review", args=[project.id, item.id]),
                           {"action": "edit", "version": 1, "text": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    assert response.status_code == 400
    item.refresh_from_db()
    assert item.version == 1 and item.text != "x"


def test_a_binary_upload_through_the_page_fails_with_a_message(client, project, lead, django_capture_on_commit_callbacks,
                                                              settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = str(tmp_path)
    client.force_login(lead)
    upload = SimpleUploadedFile("photo.csv", bytes(range(256)) * 64, content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("import", args=[project.id]),
                               {"file": upload, "text_column": "text", "duplicates": "skip"})
    assert response.status_code == 302
    job = ImportJob.objects.get(project=project)
    import_job_run(job_id=job.pk)  # what the queued task does
    job.refresh_from_db()
    page = client.get(reverse("import_detail", args=[project.id, job.pk])).content.decode()
    assert job.state == ImportJob.State.FAILED and "not UTF-8" in page and len(callbacks) == 1


def test_json_nested_as_deep_as_the_parser_goes_is_stored_or_refused_cleanly(tmp_path, project, lead):
    deep = "[" * 900 + "]" * 900
    data = ('{"text": "deep extra", "extra": ' + deep + "}\n").encode()
    assert_clear_verdict(run(project, lead, tmp_path, "deep.jsonl", data), rows_known=True)


def test_a_nul_in_a_column_name_is_reported_not_a_crash(tmp_path, project, lead):
    job = run(project, lead, tmp_path, "nul.csv", b"p\x00=4\n1\n")  # found by the fuzzer above, on PostgreSQL
    assert job.state == ImportJob.State.FAILED
    assert "No column named 'text'" in job.errors[0]["message"] and "p\\x00=4" in job.errors[0]["message"]
