"""A streamed export leaves in chunks of about 64 KB (each chunk is one write by the web server), on both paths:
PostgreSQL's COPY, which hands over about one row per block, and the Python writers."""
import pytest

from annotation.io import exporting
from annotation.io.exporting import CHUNK_CHARS, ExportFilters
from annotation.models import Item, Status

ROWS = 3000


@pytest.fixture
def many(project):
    Item.objects.bulk_create(
        Item(project=project, text=f"a text of some seventy characters, to fill the chunks quickly, row {i}",
             status=Status.ACCEPTED, final_labels=["positive"], content_hash=f"{i:064x}")
        for i in range(ROWS))
    return project


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("provenance", [False, True])
def test_the_export_leaves_in_chunks_of_at_least_64_kb(many, fmt, provenance):
    chunks = list(exporting.export_stream(project=many, fmt=fmt, filters=ExportFilters(), provenance=provenance))
    text = "".join(chunks)
    assert text.count("\n") == ROWS + (fmt == "csv")
    assert len(text) > 3 * CHUNK_CHARS
    assert all(len(chunk) >= CHUNK_CHARS for chunk in chunks[:-1])
    assert 0 < len(chunks[-1])
    # Not one chunk per row (or per COPY block) any more.
    assert len(chunks) <= len(text) // CHUNK_CHARS + 1


def test_chunking_keeps_the_text_and_its_order():
    pieces = ["ab", "", "cde", "f", "", "ghij", "k"]
    chunks = list(exporting._buffered(iter(pieces), size=4))
    assert chunks == ["abcde", "fghij", "k"]
    assert list(exporting._buffered(iter(["", ""]), size=4)) == []
