"""Import a CSV or JSONL file into a project, through the same validation and writer as an upload."""
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.io import importing
from annotation.models import ImportJob, Project


class Command(BaseCommand):
    help = "Import items from a CSV or JSONL file (validated in full first; all rows or none)."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--format", choices=list(importing.IMPORT_FORMATS), help="default: from the file name")
        parser.add_argument("--text-column", default="text")
        parser.add_argument("--label-column", default="", help="gold/seed labels: such rows are stored accepted")
        parser.add_argument("--llm-label-column", default="")
        parser.add_argument("--llm-confidence-column", default="")
        parser.add_argument("--duplicates", choices=["skip", "keep"], default="skip")
        parser.add_argument("--keep-formula-quotes", action="store_true",
                            help="CSV: keep a leading ' before = + - @ (by default it is removed, undoing our export)")
        parser.add_argument("--user", help="username recorded as the importer (default: none)")

    def handle(self, *args, path: Path, project: int, user=None, **o):
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        target = Project.objects.filter(pk=project).first()
        if target is None:
            raise CommandError(f"No project with id {project}")
        importer = None
        if user:
            importer = get_user_model().objects.filter(username=user).first()
            if importer is None:
                raise CommandError(f"No user called {user}")
        try:
            options = importing.ImportOptions(
                format=o["format"] or importing.format_for(path.name), text_column=o["text_column"],
                label_column=o["label_column"], llm_label_column=o["llm_label_column"],
                llm_confidence_column=o["llm_confidence_column"], duplicates=o["duplicates"],
                unescape_formulas=not o["keep_formula_quotes"],
            )
        except importing.ImportFailed as exc:
            raise CommandError(str(exc)) from None
        job = importing.import_job_create(project=target, user=importer, file_name=path.name, options=options,
                                          source_path=path.resolve())
        job = importing.import_job_run(job_id=job.pk)
        if job.state != ImportJob.State.DONE:
            for e in job.errors:
                where = f"row {e['row']}" if e["row"] else "file"
                self.stderr.write(f"{where}: {e['field'] + ': ' if e['field'] else ''}{e['message']}")
            raise CommandError(f"Nothing imported (job {job.pk}).")
        skipped = job.rows_total - job.rows_imported
        self.stdout.write(self.style.SUCCESS(
            f"Imported {job.rows_imported} of {job.rows_total} rows into '{target.name}' (job {job.pk}); "
            f"{job.duplicates} duplicate texts, {skipped} skipped."
        ))
