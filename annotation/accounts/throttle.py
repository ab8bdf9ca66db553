"""Login throttling that holds across any number of web processes: failed sign-ins are rows in the database.

Failures are counted per account name and per client address over a sliding window (``LOGIN_FAILURE_WINDOW_SECONDS``).
While either count is at its limit no password is checked: ``ThrottledModelBackend`` refuses before hashing, so every
login form (ours and the admin's) is covered, and the login page says how long to wait with a 429. A throttled attempt
is not counted again, so the wait ends when the window slides past the failures, whatever a guesser keeps sending.

Password-reset requests are rows of the same table, their account name marked ``RESET_MARK``: at most
``PASSWORD_RESET_LIMIT`` e-mails per address asked for, and ``PASSWORD_RESET_LIMIT_PER_ADDRESS`` requests per client
address, per ``LOGIN_FAILURE_WINDOW_SECONDS``; beyond them the form answers as always ("sent") and sends nothing, so
nobody can flood a mailbox through the app or learn from the answer which addresses have accounts. They never count
against sign-ins.
"""
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.contrib.auth.views import LoginView, PasswordResetView
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.utils import timezone

from annotation.models import LoginFailure


def client_address(request) -> str | None:
    """The client's IP address: ``REMOTE_ADDR``, or the header a trusted proxy sets (``LOGIN_ADDRESS_HEADER``)."""
    if request is None:
        return None
    header = settings.LOGIN_ADDRESS_HEADER
    raw = request.META.get(header, "") if header else ""
    # A proxy appends the address it saw; the last entry is the one no client can forge.
    return raw.split(",")[-1].strip() or request.META.get("REMOTE_ADDR") or None


RESET_MARK = "password-reset:"


def _username(username: str | None) -> str:
    return (username or "").strip().lower()[:150]


def login_wait_seconds(*, username: str | None, address: str | None) -> int:
    """Seconds until this account name and address may try a password again; 0 when they may now."""
    window = timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    now = timezone.now()
    recent = LoginFailure.objects.filter(created_at__gt=now - window)
    wait = 0
    checks = [(Q(username=_username(username)), settings.LOGIN_FAILURE_LIMIT)]
    if address:
        checks.append((Q(address=address) & ~Q(username__startswith=RESET_MARK),
                       settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS))
    for condition, limit in checks:
        failures = recent.filter(condition).count()
        if failures >= limit:
            # The window has to slide past enough failures to bring the count under the limit again.
            nth = (recent.filter(condition).order_by("created_at")
                   .values_list("created_at", flat=True)[failures - limit])
            wait = max(wait, int((nth + window - now).total_seconds()) + 1)
    return wait


def login_failure_record(*, username: str | None, address: str | None) -> None:
    LoginFailure.objects.create(username=_username(username), address=address)
    cutoff = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    LoginFailure.objects.filter(created_at__lt=cutoff).delete()


class ThrottledModelBackend(ModelBackend):
    """Django's model backend, refusing to check a password for a throttled account or address."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        address = client_address(request)
        if login_wait_seconds(username=username, address=address):
            raise PermissionDenied("too many failed sign-ins")  # authenticate() stops here and tries no other backend
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and username is not None:
            login_failure_record(username=username, address=address)
        return user


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self):
        wait = login_wait_seconds(username=self.cleaned_data.get("username"),
                                  address=client_address(self.request))
        if wait:
            minutes = (wait + 59) // 60
            raise ValidationError(
                f"Too many failed sign-ins for this account or network. Try again in {minutes} minute(s).",
                code="throttled",
            )
        return super().clean()


class ThrottledLoginView(LoginView):
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error("__all__", code="throttled"):
            response.status_code = 429
        return response


def password_reset_allowed(*, email: str, address: str | None) -> bool:
    """Whether a reset e-mail may go to ``email`` now (module docstring); records the request either way."""
    since = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    recent = LoginFailure.objects.filter(created_at__gt=since, username__startswith=RESET_MARK)
    marked = _username(RESET_MARK + (email or ""))
    allowed = recent.filter(username=marked).count() < settings.PASSWORD_RESET_LIMIT and not (
        address and recent.filter(address=address).count() >= settings.PASSWORD_RESET_LIMIT_PER_ADDRESS)
    LoginFailure.objects.create(username=marked, address=address)
    return allowed


class ThrottledPasswordResetForm(PasswordResetForm):
    def save(self, *args, request=None, **kwargs):
        if password_reset_allowed(email=self.cleaned_data["email"], address=client_address(request)):
            super().save(*args, request=request, **kwargs)


class ThrottledPasswordResetView(PasswordResetView):
    form_class = ThrottledPasswordResetForm
