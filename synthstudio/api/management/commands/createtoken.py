"""Create a personal API token for a user and print it (only this once): ``TOKEN=$(manage.py createtoken lead)``."""
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from annotation.errors import ServiceError
from synthstudio.api import tokens


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it; it is stored hashed and cannot be shown again."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")
        parser.add_argument("--expires-days", type=int, help="days until it expires (default: never)")

    def handle(self, *args, username, name, expires_days, **_):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user called '{username}'.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            created = tokens.token_create(user=user, name=name, expires_at=expires_at)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(created.secret)
