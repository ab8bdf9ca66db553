"""Exporting CSV and JSONL: columns, filters, formula protection, provenance without N+1, the pages and command."""
import csv
import io
import json
import re
from datetime import date, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.io import exporting
from annotation.io.exporting import EXPORT_FORMATS, ExportFilters, ExportFormat
from annotation.items.services import item_transition
from annotation.models import Project, ReviewAction, Source, Status
from synthstudio.lib import sql
from tests.support.factories import make_item

VISITORS = ["lead", "annotator", "outsider", "anonymous"]


def export(project, fmt="csv", provenance=False, **filters):
    return "".join(exporting.export_stream(project=project, fmt=fmt, filters=ExportFilters(**filters),
                                           provenance=provenance))


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def items(project, lead):
    project.multi_label = True
    project.save()
    accepted = make_item(project, "=HYPERLINK(\"http://evil\")", proposed=("negative",))
    item_transition(item=accepted, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=lead,
                    final_labels=["positive"])
    both = make_item(project, "two, labels\nand \"quotes\"", status=Status.NEEDS_REVIEW,
                     proposed=("positive", "negative"), source=Source.IMPORTED)
    llm = make_item(project, "@mention 😀", status=Status.AUTO_ACCEPTED, proposed=("negative",),
                    generation_job_id=42, llm_confidence=0.9, ambiguity=0.12,
                    provenance={"conditions": {"topic": "sport"}, "model": "gpt-x"}, model_scores={"p": 0.8})
    return accepted, both, llm


def test_csv_has_the_columns_and_neutralises_formulas(items):
    accepted, both, llm = items
    rows = csv_rows(export(accepted.project))
    assert list(rows[0]) == exporting.BASE_COLUMNS
    assert [r["text"] for r in rows] == ["'=HYPERLINK(\"http://evil\")", "two, labels\nand \"quotes\"", "'@mention 😀"]
    assert [r["labels"] for r in rows] == ["positive", "positive|negative", "negative"]
    assert [r["status"] for r in rows] == ["accepted", "needs_review", "auto_accepted"]
    assert rows[1]["source"] == "imported"


@pytest.mark.parametrize("cell,expected", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("'=x", "''=x"), ("'tis", "'tis"), ("plain = text", "plain = text"), ("", ""),
])
def test_neutralise(cell, expected):
    assert exporting.neutralise(cell) == expected


def test_jsonl_has_label_lists_and_raw_text(items):
    accepted = items[0]
    lines = [json.loads(line) for line in export(accepted.project, "jsonl").splitlines()]
    assert [x["labels"] for x in lines] == [["positive"], ["positive", "negative"], ["negative"]]
    assert lines[0]["text"] == "=HYPERLINK(\"http://evil\")"
    assert list(lines[0]) == exporting.BASE_COLUMNS


def test_filters_by_status_source_label_and_date(items):
    project = items[0].project
    assert [r["status"] for r in csv_rows(export(project, statuses=("accepted", "auto_accepted")))] == [
        "accepted", "auto_accepted"]
    assert [r["source"] for r in csv_rows(export(project, source="imported"))] == ["imported"]
    assert [r["labels"] for r in csv_rows(export(project, label="negative"))] == ["positive|negative", "negative"]
    today = timezone.now().date()
    assert len(csv_rows(export(project, created_from=today, created_to=today))) == 3
    assert csv_rows(export(project, created_from=today + timedelta(days=1))) == []
    assert csv_rows(export(project, created_to=date(2000, 1, 1))) == []


def test_provenance_columns_come_from_items_and_their_last_review(items, lead):
    project = items[0].project
    rows = csv_rows(export(project, provenance=True))
    assert list(rows[0]) == exporting.BASE_COLUMNS + exporting.PROVENANCE_COLUMNS
    first, _, llm = rows
    assert (first["reviewer"], first["review_action"]) == ("lead", "accept")
    assert first["reviewed_at"] != ""
    assert (llm["job_id"], llm["conditions"], llm["model"], llm["llm_confidence"], llm["ambiguity"]) == (
        "42", '{"topic": "sport"}', "gpt-x", "0.9", "0.12")
    assert json.loads(llm["scores"]) == {"p": 0.8}
    jl = [json.loads(line) for line in export(project, "jsonl", provenance=True).splitlines()]
    assert jl[2]["job_id"] == 42 and jl[2]["conditions"] == '{"topic": "sport"}' and jl[0]["reviewer"] == "lead"


def test_export_queries_do_not_grow_with_items(project, lead, django_assert_max_num_queries, monkeypatch):
    monkeypatch.setattr(exporting, "BATCH", 10)
    for i in range(25):
        item = make_item(project, f"text {i}")
        item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=lead,
                        final_labels=["positive"])
    # 3 batches + the empty one that ends the scan, each with one query for the last reviews.
    with django_assert_max_num_queries(3 * 2 + 1):
        assert len(csv_rows(export(project, provenance=True))) == 25


def test_command_writes_a_file(items, tmp_path):
    path = tmp_path / "out.jsonl"
    call_command("export_dataset", project=items[0].project.id, output=str(path), status=["accepted"])
    assert [json.loads(x)["status"] for x in path.read_text(encoding="utf-8").splitlines()] == ["accepted"]


def test_command_takes_the_format_from_the_file_name_or_refuses(items, tmp_path):
    project = items[0].project
    call_command("export_dataset", project=project.id, output=str(tmp_path / "out.ndjson"))
    assert json.loads((tmp_path / "out.ndjson").read_text(encoding="utf-8").splitlines()[0])["id"] == items[0].id
    with pytest.raises(CommandError, match=r"Cannot tell the format from the name '.*out.xml': end it in \.csv, "
                                           r"\.jsonl, \.ndjson"):
        call_command("export_dataset", project=project.id, output=str(tmp_path / "out.xml"))
    assert not (tmp_path / "out.xml").exists()
    call_command("export_dataset", project=project.id, output=str(tmp_path / "out.xml"), format="csv")
    assert csv_rows((tmp_path / "out.xml").read_text(encoding="utf-8"))[0]["id"] == str(items[0].id)


def test_an_unknown_format_is_an_error_on_every_path(items, client, lead):
    project = items[0].project
    for stream in (lambda: exporting.export_stream(project=project, fmt="xml", filters=ExportFilters()),
                   lambda: exporting.export_stream(project=project, fmt="xml", filters=ExportFilters(),
                                                   provenance=True),
                   lambda: exporting.audit_log_stream(project=project, fmt="xml")):
        with pytest.raises(ServiceError, match="Unknown export format 'xml'; the formats are csv, jsonl."):
            stream()
    client.force_login(lead)
    response = client.get(reverse("audit_log_download", args=[project.id]), {"format": "xml"})
    assert response.status_code == 400 and response.content.decode() == "format must be one of: csv, jsonl"


def _lines_items(batches, provenance):
    for batch in batches:
        yield "".join(f"{r.id}={r.text}\n" for r in batch)


def _lines_copy(rows, label):
    return sql.CopySelect(rows=rows.values_list("id", "text"), options="FORMAT csv, DELIMITER '='")


def _lines_reviews(batches):
    for batch in batches:
        yield "".join(f"{r['id']}={r['action']}\n" for r in batch)


@pytest.fixture
def lines_format(monkeypatch):
    """A format added to the registry, and nowhere else."""
    fmt = ExportFormat("lines", "Lines", "text/x-lines; charset=utf-8", ("lines", "txt"), "One id=text per line.",
                       _lines_items, _lines_copy, _lines_reviews)
    monkeypatch.setitem(EXPORT_FORMATS, "lines", fmt)
    return fmt


def test_a_format_added_to_the_registry_is_offered_and_served_everywhere(items, client, lead, lines_format, tmp_path):
    accepted, _, llm = items
    project = accepted.project
    client.force_login(lead)
    page = client.get(reverse("export", args=[project.id])).content.decode()
    assert '<option value="lines">Lines</option>' in page and "Lines: One id=text per line." in page
    assert f'{reverse("audit_log_download", args=[project.id])}?format=lines">Lines</a>' in page
    response = client.get(reverse("export_download", args=[project.id]),
                          {"format": "lines", "status": ["auto_accepted"]})
    assert response["Content-Type"] == "text/x-lines; charset=utf-8"
    assert response["Content-Disposition"].endswith('.lines"')
    assert b"".join(response.streaming_content).decode() == f"{llm.id}={llm.text}\n"
    reviews = client.get(reverse("audit_log_download", args=[project.id]), {"format": "lines"})
    assert b"".join(reviews.streaming_content).decode().endswith("=accept\n")
    call_command("export_dataset", project=project.id, output=str(tmp_path / "out.txt"), status=["auto_accepted"])
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == f"{llm.id}={llm.text}\n"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY path is PostgreSQL's")
@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
@pytest.mark.parametrize("label", ["", "negative"])
def test_postgresql_formats_the_export_as_the_python_writer_does(items, fmt, label):
    project = items[0].project
    for text in ["'=quoted", "tab\tcell", "back\\slash|bar", "\u2028 line separator", "'", "-", "\r\nCRLF"]:
        make_item(project, text, proposed=("negative",))
    make_item(project, "no labels", proposed=())
    filters = ExportFilters(label=label)
    copied = "".join(exporting.export_stream(project=project, fmt=fmt, filters=filters))
    written = "".join(EXPORT_FORMATS[fmt].write_items(exporting.export_records(project=project, filters=filters),
                                                       False))
    parse = csv_rows if fmt == "csv" else (lambda text: [json.loads(line) for line in text.split("\n")[:-1]])
    assert parse(copied) == parse(written) and len(parse(copied)) == (9 if label else 11)


def test_command_writes_csv_to_stdout(items, capsys):
    call_command("export_dataset", project=items[0].project.id, label="positive")
    assert len(csv_rows(capsys.readouterr().out)) == 2


def test_jsonl_loads_with_pandas_and_datasets(items, tmp_path, monkeypatch):
    pandas = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "out.jsonl"
    path.write_text(export(items[0].project, "jsonl", provenance=True), encoding="utf-8")
    frame = pandas.read_json(path, lines=True)
    assert list(frame["labels"]) == [["positive"], ["positive", "negative"], ["negative"]]
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds["text"][1] == "two, labels\nand \"quotes\"" and ds["labels"][1] == ["positive", "negative"]
    assert ds["job_id"] == [None, None, 42]


# --- pages ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("name", ["export", "export_download"])
def test_export_permissions(request, client, project, who, name):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    response = client.get(reverse(name, args=[project.id]), {"format": "csv"})
    assert response.status_code == {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}[who]


def test_export_page_counts_matches_with_htmx(client, lead, items):
    project = items[0].project
    client.force_login(lead)
    url = reverse("export", args=[project.id])
    assert "1 item match" in client.get(url).content.decode()  # the verified ones, by default
    assert "3 items match" in client.get(url, {"format": "csv", "include": "all"}).content.decode()
    partial = client.get(url, {"format": "csv", "status": ["accepted"]}, headers={"HX-Request": "true"})
    assert partial.content.decode().strip().startswith('<div id="export-count"')
    assert "1 item match" in partial.content.decode()


def test_download_streams_an_attachment(client, lead, items):
    project = items[0].project
    client.force_login(lead)
    response = client.get(reverse("export_download", args=[project.id]),
                          {"format": "jsonl", "provenance": "on", "include": "all"})
    assert response.streaming and response["Content-Type"].startswith("application/jsonl")
    assert response["Content-Disposition"].startswith('attachment; filename="sentiment-')
    body = b"".join(response.streaming_content).decode()
    assert [json.loads(line)["verified"] for line in body.splitlines()] == [True, False, False]


def download(client, project, **params):
    response = client.get(reverse("export_download", args=[project.id]), params)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_download_defaults_to_verified_items(client, lead, items, fmt):
    accepted, both, llm = items
    project = accepted.project
    client.force_login(lead)
    # No certificate yet: only what a person accepted.
    body = download(client, project, format=fmt)
    assert str(accepted.pk) in body and "quotes" not in body and "mention" not in body
    # While the target is certified, the auto-accepted items are verified too.
    Project.objects.filter(pk=project.pk).update(routing_state={"phase": "reached"})
    body = download(client, project, format=fmt)
    assert "mention" in body and "quotes" not in body
    # Everything, marked.
    rows = download(client, project, format=fmt, include="all")
    if fmt == "csv":
        marks = [(r["status"], r["verified"]) for r in csv_rows(rows)]
    else:
        marks = [(r["status"], "true" if r["verified"] else "false") for r in map(json.loads, rows.splitlines())]
    assert marks == [("accepted", "true"), ("needs_review", "false"), ("auto_accepted", "true")]
    # An explicit status filter exports exactly those statuses.
    body = download(client, project, format=fmt, status=["needs_review"])
    assert "quotes" in body and str(accepted.pk) + "," not in body and "mention" not in body


def test_a_marked_export_with_provenance_has_the_verified_column_last(client, lead, items):
    project = items[0].project
    client.force_login(lead)
    rows = csv_rows(download(client, project, format="csv", include="all", provenance="on"))
    assert list(rows[0]) == exporting.BASE_COLUMNS + exporting.PROVENANCE_COLUMNS + ["verified"]
    assert [r["verified"] for r in rows] == ["true", "false", "false"]


def test_download_with_a_bad_filter_shows_the_form(client, lead, project):
    client.force_login(lead)
    response = client.get(reverse("export_download", args=[project.id]), {"format": "xml"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()


def test_items_of_other_projects_never_leak(items):
    project = items[0].project
    other = Project.objects.exclude(pk=project.pk).get()
    make_item(other, "secret of another project")
    assert "secret" not in export(project)
    assert "secret" in export(other)


def summary_rows(body: str) -> list[tuple[str, ...]]:
    """The export page's table of statuses as (status, items, verified, in the file) rows."""
    table = body.split('<div id="export-count"')[1].split("</table>")[0]
    return [tuple(re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S))
            for row in re.findall(r"<tr class=[^>]*>(.*?)</tr>", table, re.S)]


def test_export_page_says_what_will_be_exported_by_status_and_verification(client, lead, items):
    project = items[0].project
    client.force_login(lead)
    url = reverse("export", args=[project.id])
    body = " ".join(client.get(url).content.decode().split())
    # By default the verified set: only what a person accepted while the target is not certified.
    assert "1 item matches: 1 verified, 0 not verified; 2 other items left out." in body
    rows = summary_rows(body)
    assert ("Accepted by a person", "1", "yes", "yes") in rows
    assert ("Auto-accepted", "1", "no", "left out") in rows
    assert ("Waiting for review", "1", "no", "left out") in rows
    everything = " ".join(client.get(url, {"format": "csv", "include": "all"},
                                     headers={"HX-Request": "true"}).content.decode().split())
    assert "3 items match: 1 verified, 2 not verified." in everything
    assert ("Auto-accepted", "1", "no", "yes") in summary_rows(everything)


def test_once_the_target_is_certified_auto_accepted_items_count_as_verified(client, lead, items):
    project = items[0].project
    Project.objects.filter(pk=project.pk).update(routing_state={
        "phase": "reached", "target": 0.9, "estimate": 0.95, "lower_bound": 0.91, "reviews": 1})
    client.force_login(lead)
    body = " ".join(client.get(reverse("export", args=[project.id])).content.decode().split())
    assert "2 items match: 2 verified, 0 not verified; 1 other item left out." in body
    assert ("Auto-accepted", "1", "yes", "yes") in summary_rows(body)


def test_the_export_counts_say_when_the_label_filter_is_still_to_come(client, lead, items):
    project = items[0].project
    client.force_login(lead)
    body = " ".join(client.get(reverse("export", args=[project.id]), {"format": "csv", "include": "all",
                                                                       "label": "negative"}).content.decode().split())
    assert "At most 3 items match" in body and "counts are before it" in body


def test_export_counts_cost_the_same_queries_at_any_size(client, lead, items, django_assert_max_num_queries):
    project = items[0].project
    client.force_login(lead)
    url = reverse("export", args=[project.id])
    with django_assert_max_num_queries(8) as small:
        client.get(url, headers={"HX-Request": "true"})
    for i in range(20):
        make_item(project, f"more {i}", status=Status.ACCEPTED if i % 2 else Status.REJECTED, proposed=("negative",))
    with django_assert_max_num_queries(len(small)):
        client.get(url, headers={"HX-Request": "true"})
