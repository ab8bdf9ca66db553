"""Every index says, in a comment right above it, which query it serves (the rule in the working brief)."""
from pathlib import Path

import pytest
from django.apps import apps

REPO = Path(__file__).resolve().parents[2]


def comment_above(lines: list[str], i: int) -> str:
    block = []
    while i > 0 and lines[i - 1].strip().startswith("#"):
        i -= 1
        block.insert(0, lines[i].strip())
    return " ".join(block)


@pytest.mark.parametrize("app", ["annotation", "generation"])
def test_every_index_has_a_comment_naming_its_query(app):
    lines = (REPO / app / "models.py").read_text(encoding="utf-8").splitlines()
    at = [i for i, line in enumerate(lines) if "models.Index(" in line]
    # Every index of the app is declared on a line of its own that this test reads.
    assert len(at) == sum(len(model._meta.indexes) for model in apps.get_app_config(app).get_models())
    assert [lines[i].strip() for i in at if "WHERE" not in comment_above(lines, i)] == []
