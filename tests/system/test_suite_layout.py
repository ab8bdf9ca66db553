"""The test suite's own shape: test modules share helpers through tests/support/ and fixtures through conftest, never
by importing each other (an imported test module ties unrelated files together and is collected twice over)."""
import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            # from tests.x import test_y
            yield from (f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("test_"))


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and parts[-1].startswith("test_")


def test_no_test_module_imports_another():
    offenders = [
        f"{path.relative_to(TESTS.parent)} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in imported_modules(path)
        if is_test_module(name)
    ]
    assert offenders == []
