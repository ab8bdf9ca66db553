"""Per-project, per-status item counts kept by triggers (``annotation.models.ItemCount`` says why triggers and how)."""
from django.db import migrations, models

TABLE = "annotation_itemcount"

# --- PostgreSQL: statement-level triggers insert delta rows; a fold now and then keeps a project's rows few ---------

POSTGRES = [
    f"""
    CREATE FUNCTION annotation_itemcount_fold(project bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        -- A try-lock: a fold never waits for another one (which holds its lock until its transaction ends).
        IF pg_try_advisory_xact_lock(hashtext('{TABLE}'), (project % 2147483647)::int) THEN
            WITH gone AS (DELETE FROM {TABLE} WHERE project_id = project RETURNING status, n)
            INSERT INTO {TABLE} (project_id, status, n)
            SELECT project, status, sum(n) FROM gone GROUP BY status HAVING sum(n) <> 0;
        END IF;
    END $$
    """,
    f"""
    CREATE FUNCTION annotation_itemcount_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        written bigint;
        fold boolean := random() < 0.02;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {TABLE} (project_id, status, n)
            SELECT project_id, status, count(*) FROM new_rows WHERE archived_at IS NULL GROUP BY project_id, status;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF fold AND written > 0 THEN
                PERFORM annotation_itemcount_fold(p) FROM (SELECT DISTINCT project_id AS p FROM new_rows) f;
            END IF;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO {TABLE} (project_id, status, n)
            SELECT project_id, status, -count(*) FROM old_rows WHERE archived_at IS NULL GROUP BY project_id, status;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF fold AND written > 0 THEN
                PERFORM annotation_itemcount_fold(p) FROM (SELECT DISTINCT project_id AS p FROM old_rows) f;
            END IF;
        ELSE
            INSERT INTO {TABLE} (project_id, status, n)
            SELECT project_id, status, sum(d) FROM (
                SELECT project_id, status, 1 AS d FROM new_rows WHERE archived_at IS NULL
                UNION ALL
                SELECT project_id, status, -1 AS d FROM old_rows WHERE archived_at IS NULL
            ) moved GROUP BY project_id, status HAVING sum(d) <> 0;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF fold AND written > 0 THEN
                PERFORM annotation_itemcount_fold(p) FROM (SELECT DISTINCT project_id AS p FROM new_rows) f;
            END IF;
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER annotation_itemcount_insert AFTER INSERT ON annotation_item REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION annotation_itemcount_delta()",
    "CREATE TRIGGER annotation_itemcount_update AFTER UPDATE ON annotation_item "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
    "annotation_itemcount_delta()",
    "CREATE TRIGGER annotation_itemcount_delete AFTER DELETE ON annotation_item REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION annotation_itemcount_delta()",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS annotation_itemcount_insert ON annotation_item",
    "DROP TRIGGER IF EXISTS annotation_itemcount_update ON annotation_item",
    "DROP TRIGGER IF EXISTS annotation_itemcount_delete ON annotation_item",
    "DROP FUNCTION IF EXISTS annotation_itemcount_delta()",
    "DROP FUNCTION IF EXISTS annotation_itemcount_fold(bigint)",
]


# --- SQLite: one writer at a time, so row-level triggers update one row per (project, status) in place --------------

def _sqlite_add(row: str, delta: str, when: str = "") -> str:
    """Statements adding ``delta`` to the count of ``row``'s (project, status) (``row`` is NEW or OLD)."""
    where = f"project_id = {row}.project_id AND status = {row}.status"
    create = "" if delta.startswith("-") else (
        f"INSERT INTO {TABLE} (project_id, status, n) SELECT {row}.project_id, {row}.status, 0 "
        f"WHERE {when or '1'} AND NOT EXISTS (SELECT 1 FROM {TABLE} WHERE {where}); ")
    return (create + f"UPDATE {TABLE} SET n = n {delta} WHERE {when or '1'} AND "
            f"id = (SELECT min(id) FROM {TABLE} WHERE {where});")


SQLITE = [
    "CREATE TRIGGER annotation_itemcount_insert AFTER INSERT ON annotation_item WHEN NEW.archived_at IS NULL "
    f"BEGIN {_sqlite_add('NEW', '+ 1')} END",
    # A decrement never creates a row: a flush that empties the count table before the items must leave it empty.
    "CREATE TRIGGER annotation_itemcount_delete AFTER DELETE ON annotation_item WHEN OLD.archived_at IS NULL "
    f"BEGIN {_sqlite_add('OLD', '- 1')} END",
    "CREATE TRIGGER annotation_itemcount_update AFTER UPDATE OF project_id, status, archived_at ON annotation_item "
    "WHEN OLD.project_id IS NOT NEW.project_id OR OLD.status IS NOT NEW.status "
    "OR (OLD.archived_at IS NULL) <> (NEW.archived_at IS NULL) "
    f"BEGIN {_sqlite_add('OLD', '- 1', 'OLD.archived_at IS NULL')} "
    f"{_sqlite_add('NEW', '+ 1', 'NEW.archived_at IS NULL')} END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS annotation_itemcount_insert",
    "DROP TRIGGER IF EXISTS annotation_itemcount_delete",
    "DROP TRIGGER IF EXISTS annotation_itemcount_update",
]

FILL = (f"INSERT INTO {TABLE} (project_id, status, n) SELECT project_id, status, count(*) FROM annotation_item "
        "WHERE archived_at IS NULL GROUP BY project_id, status")


def triggers_create(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cursor:
        for statement in POSTGRES if postgres else SQLITE:
            cursor.execute(statement)
        # After the triggers, in the migration's transaction: no item changes between the count and the triggers.
        cursor.execute(FILL)


def triggers_drop(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cursor:
        for statement in POSTGRES_DROP if postgres else SQLITE_DROP:
            cursor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0014_project_guidelines"),
    ]

    operations = [
        migrations.CreateModel(
            name="ItemCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("status", models.CharField(choices=[("proposed", "Proposed"), ("needs_review", "Needs review"),
                                                     ("auto_accepted", "Auto-accepted"), ("filtered", "Filtered"),
                                                     ("accepted", "Accepted"), ("rejected", "Rejected")],
                                            max_length=16)),
                ("n", models.BigIntegerField(default=0)),
                ("project", models.ForeignKey(db_constraint=False, db_index=False,
                                              on_delete=models.deletion.DO_NOTHING, related_name="+",
                                              to="annotation.project")),
            ],
            options={
                "indexes": [models.Index(fields=["project", "status"], name="itemcount_project_status")],
            },
        ),
        migrations.RunPython(triggers_create, triggers_drop),
    ]
