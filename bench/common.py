"""What the benchmarks share: Django set up in the bench's own process, peak memory, and removing what a bench made.

Imported as ``common`` (a bench runs as a script, so its own folder is on the path).
"""
import io
import json
import os
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Items of the synthetic projects: TREC's six question types, and texts drawn from these words.
LABELS = ["description", "entity", "abbreviation", "human", "location", "numeric"]
WORDS = ("what how why who where when which film city river price number year company song war book actor disease "
         "country team language animal colour planet law school food music game car bank island bridge great dull "
         "slow quick bright dark warm cold long short").split()


def setup_django(*, folder: str | None = None, migrate: bool = False) -> None:
    """Django with the development settings, as the tests use them, logging warnings and worse only.

    ``folder``: a throwaway folder for the app's files and, unless DATABASE_URL names a database, its SQLite database.
    ``migrate``: create or update the database's tables first.
    """
    sys.path.insert(0, str(REPO))
    if folder is not None:
        os.environ.setdefault("SYNTHSTUDIO_VAR_DIR", folder)
        os.environ.setdefault("DATABASE_URL", f"sqlite:///{folder}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synthstudio.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_text(value) -> str:
    """A Python value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def items_copy(*, project, columns: tuple[str, ...], rows) -> None:
    """COPY items into ``project`` (PostgreSQL): each row the COPY text of ``columns`` joined by tabs. Every other
    column gets its model default, so that a field added to Item later needs no change in the benches."""
    from django.db import connection

    from annotation.models import Item

    fields = [f for f in Item._meta.concrete_fields if f.attname != "id"]
    constant = {f.attname: copy_text(f.get_default()) for f in fields if f.attname not in columns}
    constant.update(project_id=str(project.pk), created_at="now", updated_at="now")
    tail = "\t" + "\t".join(constant.values()) + "\n"
    table = connection.ops.quote_name(Item._meta.db_table)
    quoted = ", ".join(connection.ops.quote_name(Item._meta.get_field(c).column) for c in [*columns, *constant])
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for k, row in enumerate(rows):
            buffer.write(row + tail)
            if k % 50_000 == 49_999:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def project_remove(project, users) -> None:
    """Delete a bench's project, its items and reviews, and its users."""
    from django.db import connection

    with connection.cursor() as cursor:
        # Reviews are append-only through the ORM; the bench removes its own rows directly.
        cursor.execute("DELETE FROM annotation_review WHERE project_id = %s", [project.pk])
        cursor.execute("DELETE FROM annotation_item WHERE project_id = %s", [project.pk])
        # Its per-status counters (no foreign key, so the project's delete leaves them; see ItemCount).
        cursor.execute("DELETE FROM annotation_itemcount WHERE project_id = %s", [project.pk])
    project.delete()
    for user in users:
        user.delete()
