"""One owner of the audit log (issue 17 #1): every write of an item's status, labels or text, and every Review row,
happens in annotation/items/services.py. This reads the source of annotation/ and generation/ and names, file:line,
any such write elsewhere: attribute assignment on an item, ``setattr``, ``QuerySet.update`` or ``update_or_create``,
``bulk_update`` and the UPDATE-FROM-VALUES helpers given those fields, raw SQL that sets them, ``Item.move_to``, and
Review rows built or inserted. Creating items (``Item(...)``, ``Item.objects.create``, ``bulk_create``) is creation,
not a change, and is allowed.

Which object an assignment writes to is read from the code around it: ``self`` is its class, a parameter its
annotation, a name assigned from ``SomeModel.objects...`` or ``SomeModel(...)`` that model. A write to an object whose
class this cannot tell is taken for an item: annotate the parameter if it is not one.
"""
import ast
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("annotation", "generation")
OWNER = "annotation/items/services.py"
AUDITED = frozenset({"status", "text", "final_labels", "proposed_labels"})
# Helpers that write the rows of a model by field name (Django's and synthstudio/lib/sql.py's).
FIELD_WRITERS = frozenset({"bulk_update", "rows_update", "_update_from_values"})
REVIEW_WRITES = frozenset({"create", "bulk_create", "get_or_create", "update_or_create"})
HOW = "write it through annotation/items/services.py (item_transition, items_change)"


def _root(node: ast.AST) -> ast.AST:
    """The innermost receiver of a chain like ``Item.objects.filter(...).update`` (here ``Item``)."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _type_name(annotation: ast.AST | None) -> str | None:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value.split(".")[-1].split("[")[0].strip()
    if isinstance(annotation, ast.Name):
        return annotation.id
    if isinstance(annotation, ast.Attribute):
        return annotation.attr
    return None


def _sql_text(node: ast.AST) -> str | None:
    """The fixed text of a string or f-string; ``quote_name('x')`` inside an f-string reads as x."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif (isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Call) and value.value.args
              and isinstance(value.value.args[0], ast.Constant)):
            parts.append(str(value.value.args[0].value))
        else:
            parts.append("{}")
    return "".join(parts)


def _sets_audited_column(sql: str) -> bool:
    lowered = " ".join(sql.lower().replace('"', " ").replace("`", " ").split())
    if "update " not in lowered or " set " not in lowered:
        return False
    assignments = " " + lowered.split(" set ", 1)[1].replace(",", " ")
    for clause in (" from ", " where ", " returning "):
        assignments = assignments.split(clause)[0]
    return any(f" {name} =" in assignments for name in AUDITED)


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, models: set[str]):
        self.path = path
        self.models = models
        self.found: list[str] = []
        self.classes: list[str] = []
        self.functions: list[str] = []
        self.scopes: list[dict[str, object]] = [{}]  # name -> class name (str) or the list of strings it holds

    # --- what names stand for --------------------------------------------------------------------------------------

    def _lookup(self, name: str):
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def _strings(self, node: ast.AST) -> list[str] | None:
        """The strings a list/tuple literal, a name bound to one, or a sum of those holds; None if unknown."""
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                return [e.value for e in node.elts]
            return None
        if isinstance(node, ast.Name):
            value = self._lookup(node.id)
            return value if isinstance(value, list) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self._strings(node.left), self._strings(node.right)
            return None if left is None or right is None else left + right
        if isinstance(node, ast.Starred):
            return self._strings(node.value)
        return None

    def _class_of(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            if node.id == "self" and self.classes:
                return self.classes[-1]
            value = self._lookup(node.id)
            return value if isinstance(value, str) else None
        return None

    def _bind(self, target: ast.AST, value: ast.AST) -> None:
        if not isinstance(target, ast.Name):
            return
        strings = self._strings(value)
        root = _root(value)
        if strings is not None:
            self.scopes[-1][target.id] = strings
        elif isinstance(root, ast.Name) and root.id in self.models | {"Item"} and root is not value:
            self.scopes[-1][target.id] = root.id

    # --- scopes ------------------------------------------------------------------------------------------------------

    def visit_ClassDef(self, node):
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node):
        scope = {}
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            kind = _type_name(arg.annotation)
            if kind:
                scope[arg.arg] = kind
        self.functions.append(node.name)
        self.scopes.append(scope)
        self.generic_visit(node)
        self.scopes.pop()
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    # --- writes ------------------------------------------------------------------------------------------------------

    def _report(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.path}:{node.lineno}: {what}; {HOW}")

    def _maybe_item(self, receiver: ast.AST) -> bool:
        kind = self._class_of(receiver)
        return kind is None or kind == "Item"

    def _assigned(self, target: ast.AST) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Attribute) and node.attr in AUDITED and isinstance(node.ctx, ast.Store):
                in_state_machine = (self.path == "annotation/models.py" and self.classes[-1:] == ["Item"]
                                    and self.functions[-1:] == ["move_to"])
                if self._maybe_item(node.value) and not in_state_machine:
                    self._report(node, f"assigns {ast.unparse(node)}")

    def visit_Assign(self, node):
        for target in node.targets:
            self._assigned(target)
            self._bind(target, node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._assigned(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._assigned(node.target)
        kind = _type_name(node.annotation)
        if isinstance(node.target, ast.Name) and kind:
            self.scopes[-1][node.target.id] = kind
        if node.value is not None:
            self._bind(node.target, node.value)
        self.generic_visit(node)

    def visit_For(self, node):
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and _sets_audited_column(node.value):
            self._report(node, "raw SQL sets an audited column")

    def visit_JoinedStr(self, node):
        text = _sql_text(node)
        if text and _sets_audited_column(text):
            self._report(node, "raw SQL sets an audited column")
        # The parts are read above; visiting them again would report a constant part twice.

    def visit_Call(self, node):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        root = _root(func.value) if isinstance(func, ast.Attribute) else None
        root_name = root.id if isinstance(root, ast.Name) else None
        other_model = root_name in self.models
        keywords = {k.arg: k.value for k in node.keywords}

        if name == "setattr" and len(node.args) >= 2:
            field = node.args[1]
            audited = not isinstance(field, ast.Constant) or field.value in AUDITED
            if audited and self._maybe_item(node.args[0]):
                self._report(node, f"{ast.unparse(node)} may set an audited field")
        elif name == "update" and isinstance(func, ast.Attribute) and not other_model:
            explicit = sorted(AUDITED & set(keywords))
            unpacked = None in keywords and root_name == "Item"
            if explicit or unpacked:
                self._report(node, f".update() of {', '.join(explicit) or '**fields'}")
        elif name in ("update_or_create", "get_or_create") and root_name == "Item":
            defaults = keywords.get("defaults") or keywords.get("create_defaults")
            if isinstance(defaults, ast.Dict) and AUDITED & {k.value for k in defaults.keys
                                                             if isinstance(k, ast.Constant)}:
                self._report(node, f".{name}() writes audited fields")
        elif name in FIELD_WRITERS and not other_model:
            model = keywords.get("model")
            fields = keywords.get("fields", node.args[1] if len(node.args) > 1 else None)
            if not (isinstance(model, ast.Name) and model.id in self.models):
                written = self._strings(fields) if fields is not None else None
                if written is None:
                    self._report(node, f"{name}() writes fields this scan cannot read")
                elif AUDITED & set(written):
                    self._report(node, f"{name}() writes {', '.join(sorted(AUDITED & set(written)))}")
        elif name == "move_to":
            self._report(node, "Item.move_to changes the status in memory for a write")

        if (root_name == "Review" or (isinstance(func, ast.Name) and func.id == "Review")) and (
                isinstance(func, ast.Name) or name in REVIEW_WRITES):
            self._report(node, "builds or inserts a Review row")
        elif name in REVIEW_WRITES and isinstance(func, ast.Attribute) and "reviews" in ast.unparse(func.value):
            self._report(node, "inserts a Review row through a related manager")
        self.generic_visit(node)


def scan(path: str, source: str) -> list[str]:
    models = {model.__name__ for model in apps.get_models()} - {"Item"}
    scanner = _Scanner(path, models)
    scanner.visit(ast.parse(source))
    return scanner.found


def test_no_module_writes_items_or_reviews_outside_the_owner():
    found = []
    for top in SCANNED:
        for file in sorted((ROOT / top).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            if path != OWNER:
                found += scan(path, file.read_text(encoding="utf-8"))
    assert found == []


FLAGGED = {
    "assignment": "def f(item):\n    item.status = 'accepted'\n",
    "augmented assignment": "def f(item):\n    item.text += ' more'\n",
    "tuple target": "def f(items):\n    n, items[0].final_labels = 1, []\n",
    "assignment to an Item": "def f(item: Item):\n    item.proposed_labels = []\n",
    "loop over items": "def f():\n    for item in Item.objects.all():\n        item.status = 'x'\n",
    "setattr": "def f(item):\n    setattr(item, 'proposed_labels', [])\n",
    "setattr of any name": "def f(item, name):\n    setattr(item, name, 1)\n",
    "queryset update": "Item.objects.filter(pk=1).update(status='accepted', version=2)\n",
    "related manager update": "def f(project):\n    project.items.filter().update(final_labels=[])\n",
    "queryset variable": "def f():\n    qs = Item.objects.all()\n    qs.update(text='x')\n",
    "unpacked update": "def f(changes):\n    Item.objects.filter(pk=1).update(**changes)\n",
    "update_or_create": "Item.objects.update_or_create(pk=1, defaults={'status': 'accepted'})\n",
    "bulk_update": "def f(items):\n    Item.objects.bulk_update(items, ['status', 'version'])\n",
    "sql helper": "FIELDS = ['ambiguity'] + ['text']\ndef f(items):\n    rows_update(model=Item, objs=items, "
                  "fields=FIELDS)\n",
    "sql helper, fields unknown": "def f(items, g):\n    rows_update(model=Item, objs=items, fields=g())\n",
    "old sql helper": "MOVE = ['status', 'version']\ndef f(items):\n    _update_from_values(items, MOVE)\n",
    "raw sql": "SQL = 'UPDATE annotation_item SET version = 2, status = %s WHERE id = %s'\n",
    "raw sql in an f-string": "def f(c, t, q):\n    c.execute(f'UPDATE {t} SET {q(\"proposed_labels\")} = %s')\n",
    "state machine outside the owner": "def f(item):\n    item.move_to('accepted')\n",
    "review constructor": "def f(i):\n    return Review(item=i, action='skip')\n",
    "review insert": "def f(i):\n    Review.objects.create(item=i, action='skip')\n",
    "review bulk insert": "def f(rows):\n    Review.objects.bulk_create(rows)\n",
    "review through the item": "def f(item):\n    item.reviews.create(action='skip')\n",
}

ALLOWED = {
    "creating an item": "Item.objects.create(project=p, text='t', status='proposed')\n",
    "creating items in bulk": "Item.objects.bulk_create([Item(text='t', status='filtered', proposed_labels=['a'])])\n",
    "another model's status": "GenerationJob.objects.filter(pk=1).update(status='running')\n",
    "an annotated other model": "def f(job: GenerationJob):\n    job.status = 'done'\n",
    "a name bound to another model": "def f():\n    job = GenerationJob.objects.get(pk=1)\n    job.status = 'done'\n",
    "other columns of items": "Item.objects.filter(pk=1).update(claimed_by=None, review_count=F('review_count') + 1)\n",
    "sql helper with other columns": "SCORE = ['ambiguity']\ndef f(items):\n    _update_from_values(items, SCORE)\n",
    "sql helper on another model": "def f(jobs):\n    rows_update(model=GenerationJob, objs=jobs, fields=['status'])\n",
    "dict update": "def f(counts, row):\n    counts.update({row['status']: 1})\n",
    "another class's attribute": "class Sample:\n    def set(self):\n        self.text = 'x'\n",
    "a read in sql": "SQL = \"SELECT status FROM annotation_item WHERE text = %s\"\n",
    "a condition in sql": "SQL = 'UPDATE annotation_item SET claimed_by_id = NULL WHERE status = %s'\n",
    "reading reviews": "def f(i):\n    return Review.objects.filter(item=i).count()\n",
}


@pytest.mark.parametrize("source", FLAGGED.values(), ids=FLAGGED.keys())
def test_the_scan_names_each_kind_of_write(source):
    found = scan("annotation/example.py", source)
    assert len(found) == 1 and found[0].startswith("annotation/example.py:"), found


@pytest.mark.parametrize("source", ALLOWED.values(), ids=ALLOWED.keys())
def test_the_scan_lets_creation_reads_and_other_models_pass(source):
    assert scan("annotation/example.py", source) == []


def test_the_state_machine_itself_may_set_the_status():
    source = "class Item:\n    def move_to(self, target):\n        self.status = target\n"
    assert scan("annotation/models.py", source) == []
    assert len(scan("annotation/other.py", source)) == 1
