"""Create a user account from a shell (the password from standard input or an environment variable, never argv)."""
import os
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Create a user. The password is read from the variable named by --password-env (default "
            "SYNTHSTUDIO_PASSWORD) or, with --password-stdin, from standard input; without either the account has "
            "no usable password (API tokens only).")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--password-env", default="SYNTHSTUDIO_PASSWORD")
        parser.add_argument("--password-stdin", action="store_true")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, *args, username, email, password_env, password_stdin, superuser, **_):
        User = get_user_model()
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(f"A user called '{username}' exists already.")
        password = sys.stdin.readline().rstrip("\n") if password_stdin else os.environ.get(password_env)
        user = User(username=username, email=email, is_staff=superuser, is_superuser=superuser)
        if password:
            try:
                validate_password(password, user)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save()
        self.stdout.write(f"Created user '{user.username}' (id {user.pk}).")
