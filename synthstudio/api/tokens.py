"""Creating, checking and revoking personal API tokens.

A token reads ``ss_<prefix>_<secret>``: the prefix (8 hex characters) finds the row, the SHA-256 of the whole token is
compared in constant time. Only the hash is stored, so a token is shown once, when it is created. ``last_used_at`` is
written at most once per ``LAST_USED_EVERY`` per token, so that a busy script does not write a row per request.
"""
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.errors import ServiceError
from synthstudio.api.models import ApiToken

TOKEN_PREFIX = "ss_"
LAST_USED_EVERY = timedelta(minutes=1)
MAX_TOKEN_CHARS = 200  # an Authorization header longer than any token we issue is refused without a query
MAX_TOKENS_PER_USER = 100


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # the whole token, to show once


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(*, user, name: str, expires_at: datetime | None = None) -> NewToken:
    name = name.strip()
    if not name:
        raise ServiceError("Give the token a name, e.g. the script or machine that uses it.")
    if len(name) > 100:
        raise ServiceError("A token name has at most 100 characters.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("The expiry date must be in the future.")
    if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_TOKENS_PER_USER:
        raise ServiceError(f"You have {MAX_TOKENS_PER_USER} live tokens; revoke one first.")
    for _ in range(5):  # a prefix collision (32 bits) is rare; draw again rather than fail
        prefix = secrets.token_hex(4)
        secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(user=user, name=name, prefix=prefix, secret_hash=_hash(secret),
                                                expires_at=expires_at)
        except IntegrityError:
            continue
        return NewToken(token=token, secret=secret)
    raise ServiceError("Could not create a token; try again.")


def token_authenticate(*, secret: str):
    """The active user a live token belongs to, or None (unknown, malformed, revoked, expired, inactive user)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_TOKEN_CHARS:
        return None
    prefix, sep, _ = secret[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(prefix) != 8:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(secret)):
        return None
    now = timezone.now()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if not token.user.is_active:
        return None
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.user.api_token = token
    return token.user


def token_revoke(*, user, token_id: int) -> ApiToken:
    """Revoke one of the user's tokens (revoking a revoked token changes nothing)."""
    token = ApiToken.objects.filter(pk=token_id, user=user).first()
    if token is None:
        raise ServiceError("You have no such token.")
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    return token


def tokens_for_user(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-id")
