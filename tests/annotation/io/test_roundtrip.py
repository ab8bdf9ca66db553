"""Export then re-import gives the same texts and labels back, for texts that break naive CSV and JSON handling."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotation.io import exporting, importing
from annotation.io.exporting import ExportFilters
from annotation.models import Item, Status
from tests.support.factories import make_item, make_project, make_user

LABELS = ["positive", "très \"bien\", ok", "=odd", "emoji 🎉"]
TRICKY = ["=", "+", "-", "@", "'", "'=", "\t", "\r", "\n", '"', ",", "|", "\\", " ", "\r\n", "😀", "é", "\u2028"]

# Any Unicode but surrogates (not storable) and NUL (PostgreSQL cannot store it), with a visible character somewhere:
# an empty or blank text is refused by the importer by design.
texts = st.builds(
    lambda head, body, tail: head + body + tail,
    st.sampled_from(TRICKY + [""]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40),
    st.sampled_from(TRICKY + [""]),
).filter(lambda t: t.strip())
rows = st.lists(st.tuples(texts, st.lists(st.sampled_from(LABELS), unique=True, max_size=3)), min_size=1, max_size=8)


def roundtrip(rows, fmt, tmp_path, lead):
    source = make_project(lead=lead, labels=LABELS, multi_label=True)
    for text, labels in rows:
        make_item(source, text, status=Status.ACCEPTED if labels else Status.PROPOSED, proposed=(),
                  final_labels=labels)
    path = tmp_path / f"export-{source.pk}.{fmt}"
    with path.open("w", encoding="utf-8", newline="") as f:
        for chunk in exporting.export_stream(project=source, fmt=fmt, filters=ExportFilters()):
            f.write(chunk)
    target = make_project(lead=lead, labels=LABELS, multi_label=True)
    options = importing.ImportOptions(format=fmt, label_column="labels", duplicates="keep")
    job = importing.import_job_create(project=target, user=lead, file_name=path.name, options=options,
                                      source_path=path)
    job = importing.import_job_run(job_id=job.pk)
    assert job.state == "done", job.errors
    return list(Item.objects.filter(project=target).order_by("id").values_list("text", "final_labels"))


@pytest.mark.parametrize("fmt", list(exporting.EXPORT_FORMATS))  # every format we write, we must read back
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_export_then_import_gives_the_same_items_and_labels(db, tmp_path, fmt, rows):
    lead = make_user()
    assert roundtrip(rows, fmt, tmp_path, lead) == [(text, labels) for text, labels in rows]

