"""Write a project's items to a CSV or JSONL file (or standard output), streamed like the download."""
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.errors import ServiceError
from annotation.io import exporting
from annotation.models import Project, Source, Status


class Command(BaseCommand):
    help = "Export a project's items as CSV or JSONL (see annotation/io/exporting.py for the columns)."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--output", "-o", default="-", help="file path, or - for standard output")
        parser.add_argument("--format", choices=list(exporting.EXPORT_FORMATS),
                            help="default: from the extension of --output; csv for standard output")
        parser.add_argument("--status", action="append", choices=Status.values, default=[], help="repeatable")
        parser.add_argument("--source", choices=Source.values, default="")
        parser.add_argument("--label", default="", help="only items that carry this label")
        parser.add_argument("--from", dest="created_from", type=date.fromisoformat,
                            help="created on or after (YYYY-MM-DD)")
        parser.add_argument("--to", dest="created_to", type=date.fromisoformat,
                            help="created on or before (YYYY-MM-DD)")
        parser.add_argument("--provenance", action="store_true", help="add the provenance columns")

    def handle(self, *args, project: int, output: str, **o):
        target = Project.objects.filter(pk=project).first()
        if target is None:
            raise CommandError(f"No project with id {project}")
        try:
            fmt = o["format"] or ("csv" if output == "-" else exporting.format_for_path(output))
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        filters = exporting.ExportFilters(statuses=tuple(o["status"]), source=o["source"], label=o["label"],
                                          created_from=o["created_from"], created_to=o["created_to"])
        chunks = exporting.export_stream(project=target, fmt=fmt, filters=filters, provenance=o["provenance"])
        if output == "-":
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        with Path(output).open("w", encoding="utf-8", newline="") as f:
            for chunk in chunks:
                f.write(chunk)
        self.stderr.write(f"Wrote {output}")
