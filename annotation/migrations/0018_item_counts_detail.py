"""The item counters by source, labelling and scoring too (``annotation.models.ItemCount``): the project overview reads
its pipeline counts from them instead of scanning the project's items. The triggers of 0015 are replaced by ones that
group their deltas by the new columns as well, and every project's counters are rebuilt from its items.

The item table is locked against writes (SHARE) for the migration's transaction: a write that ran between the
rebuild's count and the new triggers, or that fired the old trigger after the new columns existed, would be lost or
fail. Writers wait for the rebuild (a few seconds per million items) and then go on under the new triggers.
"""
import importlib

from django.db import migrations, models

TABLE = "annotation_itemcount"
ITEMS = "annotation_item"
COLUMNS = "project_id, status, imported, labelled, scored"
CELL = "status, imported, labelled, scored"

# The counter columns of an item row, as the reads and the recount in annotation/items/counts.py define them.
ROW_CELL = ("project_id, status, source = 'imported' AS imported, proposed_labels <> '[]'::jsonb AS labelled, "
            "ambiguity IS NOT NULL AS scored")

# --- PostgreSQL: statement-level triggers insert delta rows; a fold now and then keeps a project's rows few ---------

POSTGRES = [
    f"""
    CREATE FUNCTION annotation_itemcount_fold(project bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        -- A try-lock: a fold never waits for another one (which holds its lock until its transaction ends).
        IF pg_try_advisory_xact_lock(hashtext('{TABLE}'), (project % 2147483647)::int) THEN
            WITH gone AS (DELETE FROM {TABLE} WHERE project_id = project RETURNING {CELL}, n)
            INSERT INTO {TABLE} ({COLUMNS}, n)
            SELECT project, {CELL}, sum(n) FROM gone GROUP BY {CELL} HAVING sum(n) <> 0;
        END IF;
    END $$
    """,
    # An UPDATE counts its new rows and its old rows per cell and writes only the cells whose count moved: a scoring
    # round that re-scores scored items (ambiguity from one number to another) writes no row at all. Counting each
    # side before joining them aggregates a few dozen rows instead of twice the statement's (6% less time).
    f"""
    CREATE FUNCTION annotation_itemcount_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        written bigint;
        fold boolean := random() < 0.02;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {TABLE} ({COLUMNS}, n)
            SELECT {ROW_CELL}, count(*) FROM new_rows WHERE archived_at IS NULL GROUP BY 1, 2, 3, 4, 5;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF fold AND written > 0 THEN
                PERFORM annotation_itemcount_fold(p) FROM (SELECT DISTINCT project_id AS p FROM new_rows) f;
            END IF;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO {TABLE} ({COLUMNS}, n)
            SELECT {ROW_CELL}, -count(*) FROM old_rows WHERE archived_at IS NULL GROUP BY 1, 2, 3, 4, 5;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF fold AND written > 0 THEN
                PERFORM annotation_itemcount_fold(p) FROM (SELECT DISTINCT project_id AS p FROM old_rows) f;
            END IF;
        ELSE
            INSERT INTO {TABLE} ({COLUMNS}, n)
            SELECT {COLUMNS}, sum(n) FROM (
                SELECT {ROW_CELL}, count(*) AS n FROM new_rows WHERE archived_at IS NULL GROUP BY 1, 2, 3, 4, 5
                UNION ALL
                SELECT {ROW_CELL}, -count(*) AS n FROM old_rows WHERE archived_at IS NULL GROUP BY 1, 2, 3, 4, 5
            ) moved GROUP BY {COLUMNS} HAVING sum(n) <> 0;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF fold AND written > 0 THEN
                PERFORM annotation_itemcount_fold(p) FROM (SELECT DISTINCT project_id AS p FROM new_rows) f;
            END IF;
        END IF;
        RETURN NULL;
    END $$
    """,
    f"CREATE TRIGGER annotation_itemcount_insert AFTER INSERT ON {ITEMS} REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION annotation_itemcount_delta()",
    f"CREATE TRIGGER annotation_itemcount_update AFTER UPDATE ON {ITEMS} "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
    "annotation_itemcount_delta()",
    f"CREATE TRIGGER annotation_itemcount_delete AFTER DELETE ON {ITEMS} REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION annotation_itemcount_delta()",
]


# --- SQLite: one writer at a time, so row-level triggers update one row per cell in place ---------------------------

def _sqlite_cell(row: str) -> list[tuple[str, str]]:
    """The counter columns and their values for ``row`` (NEW or OLD)."""
    return [("project_id", f"{row}.project_id"), ("status", f"{row}.status"),
            ("imported", f"({row}.source = 'imported')"), ("labelled", f"({row}.proposed_labels <> '[]')"),
            ("scored", f"({row}.ambiguity IS NOT NULL)")]


def _sqlite_add(row: str, delta: str, when: str = "") -> str:
    """Statements adding ``delta`` to the count of ``row``'s cell (``row`` is NEW or OLD)."""
    cell = _sqlite_cell(row)
    where = " AND ".join(f"{column} = {value}" for column, value in cell)
    create = "" if delta.startswith("-") else (
        f"INSERT INTO {TABLE} ({COLUMNS}, n) SELECT {', '.join(value for _, value in cell)}, 0 "
        f"WHERE {when or '1'} AND NOT EXISTS (SELECT 1 FROM {TABLE} WHERE {where}); ")
    return (create + f"UPDATE {TABLE} SET n = n {delta} WHERE {when or '1'} AND "
            f"id = (SELECT min(id) FROM {TABLE} WHERE {where});")


def _sqlite_moved() -> str:
    """An UPDATE moved the item between cells (or in or out of the live items)."""
    old, new = _sqlite_cell("OLD"), _sqlite_cell("NEW")
    return " OR ".join([*(f"{a} IS NOT {b}" for (_, a), (_, b) in zip(old, new, strict=True)),
                        "(OLD.archived_at IS NULL) <> (NEW.archived_at IS NULL)"])


SQLITE = [
    f"CREATE TRIGGER annotation_itemcount_insert AFTER INSERT ON {ITEMS} WHEN NEW.archived_at IS NULL "
    f"BEGIN {_sqlite_add('NEW', '+ 1')} END",
    # A decrement never creates a row: a flush that empties the count table before the items must leave it empty.
    f"CREATE TRIGGER annotation_itemcount_delete AFTER DELETE ON {ITEMS} WHEN OLD.archived_at IS NULL "
    f"BEGIN {_sqlite_add('OLD', '- 1')} END",
    f"CREATE TRIGGER annotation_itemcount_update AFTER UPDATE OF project_id, status, archived_at, source, "
    f"proposed_labels, ambiguity ON {ITEMS} WHEN {_sqlite_moved()} "
    f"BEGIN {_sqlite_add('OLD', '- 1', 'OLD.archived_at IS NULL')} "
    f"{_sqlite_add('NEW', '+ 1', 'NEW.archived_at IS NULL')} END",
]

FILL = (f"INSERT INTO {TABLE} ({COLUMNS}, n) SELECT project_id, status, source = 'imported', proposed_labels <> '[]', "
        f"ambiguity IS NOT NULL, count(*) FROM {ITEMS} WHERE archived_at IS NULL GROUP BY 1, 2, 3, 4, 5")

# The counters as 0015 made them: its triggers (and their removal) and its fill, for going back.
previous = importlib.import_module("annotation.migrations.0015_item_counts")


def triggers_remove(apps, schema_editor):
    """No counter triggers and no counter rows: before the columns change (0015's triggers could not write a row once
    the new columns exist, and a trigger must not see its table remade on SQLite), and before the rebuild."""
    postgres = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cursor:
        if postgres:
            # Waits for the item writes in flight to commit, and holds new ones until this migration commits.
            cursor.execute(f"LOCK TABLE {ITEMS} IN SHARE MODE")
        previous.triggers_drop(apps, schema_editor)
        cursor.execute(f"DELETE FROM {TABLE}")


def counters_install(apps, schema_editor):
    """The new triggers, then every project's counters rebuilt from its items (in the same transaction, so no item
    changes between the count and the triggers)."""
    postgres = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cursor:
        for statement in POSTGRES if postgres else SQLITE:
            cursor.execute(statement)
        cursor.execute(FILL)


def counters_restore(apps, schema_editor):
    """Going back, once the new columns are gone: 0015's triggers and per-status counters."""
    previous.triggers_create(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0017_calibration_index"),
    ]

    operations = [
        migrations.RunPython(triggers_remove, counters_restore),
        migrations.AddField(model_name="itemcount", name="imported", field=models.BooleanField(default=False)),
        migrations.AddField(model_name="itemcount", name="labelled", field=models.BooleanField(default=False)),
        migrations.AddField(model_name="itemcount", name="scored", field=models.BooleanField(default=False)),
        migrations.RunPython(counters_install, triggers_remove),
    ]
