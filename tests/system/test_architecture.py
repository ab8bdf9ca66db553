"""The one-way arrows between packages (README, "Layout and architecture"), read from every import in the code."""
import ast
from pathlib import Path

from tests.support.runtime import REPO

# What each package may import besides itself and the shared base (annotation.models, annotation.errors,
# annotation.permissions, annotation's admin/apps, synthstudio.lib).
ALLOWED = {
    "annotation.accounts": set(),
    "annotation.items": set(),
    "annotation.projects": {"annotation.items"},
    "annotation.selection": {"annotation.items", "annotation.projects"},
    "annotation.queue": {"annotation.items", "annotation.projects", "annotation.selection"},
    "annotation.io": {"annotation.items", "annotation.projects", "annotation.selection"},
    "annotation.dashboard": {"annotation.items", "annotation.projects", "annotation.selection"},
    "annotation.management": {"annotation.items", "annotation.projects", "annotation.selection", "annotation.io",
                              "annotation.queue", "annotation.dashboard", "generation.services", "synthstudio.tasks"},
    "generation": {"annotation.items", "annotation.projects", "annotation.selection"},
    "synthstudio": {"annotation.items", "annotation.projects", "annotation.selection", "annotation.io",
                    "annotation.queue", "annotation.dashboard", "annotation.accounts", "generation",
                    "synthstudio.webhooks", "synthstudio.api"},
    # Webhooks hear annotation.events; annotation and generation never import them.
    "synthstudio.webhooks": set(),
    # start_job: the start form and job services, as the generation pages use them.
    "generation.management": {"annotation.items", "annotation.projects", "annotation.selection", "generation"},
    # The API: the pages' services and selectors; nothing in annotation or generation imports it.
    "synthstudio.api": {"annotation.items", "annotation.projects", "annotation.selection", "annotation.io",
                        "annotation.queue", "generation"},
}
BASE = {"annotation.models", "annotation.errors", "annotation.permissions", "annotation.apps", "annotation.admin",
        "annotation.templatetags", "annotation.events", "synthstudio.lib"}
ROOTS = ("annotation", "generation", "synthstudio")


def _unit(module: str) -> str | None:
    """The package a dotted module name belongs to for these rules (None: outside our code)."""
    parts = module.split(".")
    if parts[0] not in ROOTS:
        return None
    if len(parts) > 1 and (REPO / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    if parts[0] == "annotation" and len(parts) > 1:
        return ".".join(parts[:2])  # annotation.models, annotation.errors, ...
    return parts[0]


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from annotation import selection`` imports the package annotation.selection.
            yield node.lineno, [f"{node.module}.{alias.name}" if node.module in ROOTS else node.module
                                for alias in node.names]
        elif isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]


def _violations():
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO)
            if "migrations" in rel.parts:
                continue
            parts = rel.with_suffix("").parts
            source = _unit(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            if source in BASE or source in ("annotation", "annotation.urls"):
                continue
            allowed = ALLOWED.get(source)
            assert allowed is not None, f"{rel}: package {source} has no rule in ALLOWED; add one"
            for line, modules in _imports(path):
                for module in modules:
                    target = _unit(module)
                    if target is None or target == source or target in BASE:
                        continue
                    if target == "annotation.urls" or target in allowed or module in allowed:
                        continue
                    yield f"{rel}:{line} imports {module} ({source} -> {target})"


def test_packages_import_only_along_the_documented_arrows():
    assert list(_violations()) == []


def test_the_rules_themselves_have_no_cycle():
    seen, stack = set(), set()

    def visit(node):
        if node in stack:
            raise AssertionError(f"cycle through {node}")
        if node in seen:
            return
        stack.add(node)
        for target in ALLOWED.get(node, ()):
            visit(target)
        stack.discard(node)
        seen.add(node)

    for package in ALLOWED:
        visit(package)
