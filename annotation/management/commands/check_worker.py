"""Send one task through the configured broker to a running worker and wait for its answer."""
import uuid

from django.core.management.base import BaseCommand, CommandError

from synthstudio.tasks import health


class Command(BaseCommand):
    help = "Round-trip a health task through the broker and a worker; exits non-zero if no answer comes."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args, timeout, **options):
        token = uuid.uuid4().hex
        try:
            answer = health.delay(token).get(timeout=timeout)
        except Exception as exc:  # any failure here means no worker answered; say which
            raise CommandError(f"No answer from a worker within {timeout:.0f} s: {exc!r}") from exc
        if answer.get("token") != token:
            raise CommandError(f"A worker answered with the wrong token: {answer!r}")
        self.stdout.write(self.style.SUCCESS(
            f"Worker answered: database={answer['database']} items={answer['items']}"
        ))
