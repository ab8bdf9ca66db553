"""Start a generation or labelling job from a shell, with every option of the start form, checked by that form."""
import json
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from pydantic import ValidationError

from annotation.errors import ServiceError
from annotation.models import Membership, Project, Role
from annotation.projects.selectors import project_label_names
from generation import selectors, services
from generation.config import JobOptions
from generation.forms import JobStartForm, job_form_data
from generation.models import JobMode


class Command(BaseCommand):
    help = ("Start a generation or labelling job. Options as JSON (every field of generation.config.JobOptions, e.g. "
            "'{\"samples_per_request\": 3, \"filters\": {\"min_chars\": 5}}'); --count and --label override it. "
            "Prints the job id, or with --wait the job's outcome.")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True)
        parser.add_argument("--mode", choices=JobMode.values, required=True)
        parser.add_argument("--provider", default=settings.LLM_PROVIDER)
        parser.add_argument("--as", dest="username", help="a lead of the project (default: its first lead)")
        parser.add_argument("--connection", type=int, help="an LLM connection id (default: the project's default)")
        parser.add_argument("--model", default="", help="model name (default: the connection's)")
        parser.add_argument("--count", type=int, help="samples to generate, or pool items to label")
        parser.add_argument("--label", action="append", default=[], help="target label (repeatable; default: all)")
        parser.add_argument("--options", default="{}", help="JSON object, or @file.json")
        parser.add_argument("--inline", action="store_true", help="run the job in this process (no worker needed)")
        parser.add_argument("--wait", action="store_true", help="wait for a worker to finish the job")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most")

    def handle(self, *args, project, mode, provider, username, connection, model, count, label, options, inline,
               wait, timeout, **_):
        target = Project.objects.filter(pk=project, archived_at__isnull=True).first()
        if target is None:
            raise CommandError(f"No project with id {project}.")
        user = self._lead(target, username)
        raw = Path(options[1:]).read_text() if options.startswith("@") else options
        try:
            chosen = json.loads(raw)
            if not isinstance(chosen, dict):
                raise ValueError("options must be a JSON object")
            if count is not None:
                chosen["count"] = count
            if label:
                chosen["labels"] = label
            typed = JobOptions.model_validate(chosen)
        except (ValueError, ValidationError) as exc:
            raise CommandError(f"--options: {exc}") from None
        form = JobStartForm(project=target)
        chosen_connection = str(connection) if connection is not None else form.fields["connection"].initial
        form = JobStartForm(job_form_data(mode=mode, provider=provider, options=typed, connection=chosen_connection,
                                          model_name=model),
                            project=target, label_names=project_label_names(project=target))
        if not form.is_valid():
            raise CommandError("; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
        kwargs = form.job_kwargs()
        kwargs["options"] = kwargs["options"].model_copy(update={"parse_retries": typed.parse_retries})
        try:
            job = services.job_create(project=target, user=user, run_now=inline, **kwargs)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        if not (inline or wait):
            self.stdout.write(str(job.id))
            return
        deadline = time.monotonic() + timeout
        while job.is_active:
            if time.monotonic() > deadline:
                raise CommandError(f"Job {job.id} still {job.status} after {timeout:.0f} s.")
            time.sleep(1)
            job = selectors.job_get(project=target, job_id=job.id)
            self.stderr.write(f"job {job.id}: {job.status}, batch {job.batches_done}/{job.batches_total}")
        self.stdout.write(f"{job.id} {job.status}: {job.outcome}")
        if job.status != "succeeded":
            raise CommandError(f"Job {job.id} {job.status}.")

    def _lead(self, project, username):
        leads = Membership.objects.filter(project=project, role=Role.LEAD).select_related("user").order_by("id")
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None or not (user.is_superuser or leads.filter(user=user).exists()):
                raise CommandError(f"'{username}' is not a lead of project {project.id}.")
            return user
        first = leads.first()
        if first is None:
            raise CommandError(f"Project {project.id} has no lead; pass --as.")
        return first.user
