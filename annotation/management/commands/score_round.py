"""Request a scoring round of a project (what the routing page's "Score and route now" does), optionally wait for it."""
import time

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project, ScoringRound
from annotation.selection import selection_request_round, selection_run_round


class Command(BaseCommand):
    help = ("Queue a scoring round for a worker (--wait: until it has finished, printing its routing counts), or run "
            "it in this process (--inline).")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True)
        parser.add_argument("--wait", action="store_true", help="wait until the round has finished")
        parser.add_argument("--inline", action="store_true", help="run the round here (no worker needed)")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most")

    def handle(self, *args, project, wait, inline, timeout, **_):
        target = Project.objects.filter(pk=project, archived_at__isnull=True).first()
        if target is None:
            raise CommandError(f"No project with id {project}.")
        if inline:
            done = selection_run_round(project=target, trigger="manual")
            if done is None:
                raise CommandError("A round of this project is running already; try again when it has finished.")
            return self._report(done)
        # A round running now counts too: a queued one would wait for it (one running round per project).
        last = (ScoringRound.objects.filter(project=target).exclude(state=ScoringRound.State.RUNNING)
                .order_by("-id").values_list("id", flat=True).first() or 0)
        queued = selection_request_round(target.pk, force=True)
        self.stderr.write("Scoring round queued." if queued else "A scoring round was queued already.")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while True:
            done = (ScoringRound.objects.filter(project=target, id__gt=last)
                    .exclude(state=ScoringRound.State.RUNNING).order_by("id").first())
            if done is not None:
                return self._report(done)
            if time.monotonic() > deadline:
                raise CommandError(f"No scoring round finished within {timeout:.0f} s; is a worker running?")
            time.sleep(1)

    def _report(self, scoring_round: ScoringRound):
        if scoring_round.state == ScoringRound.State.FAILED:
            raise CommandError(f"Round {scoring_round.model_version} failed: {scoring_round.error}")
        routing = scoring_round.metrics.get("routing", {})
        self.stdout.write(f"round {scoring_round.model_version} done: {scoring_round.items_scored} items scored; "
                          + ", ".join(f"{k} {v}" for k, v in routing.items()))
