"""Invitations: a lead makes a single-use, expiring link with a role; whoever opens it sets a username and password
(or, signed in already, joins with their account) and becomes a member with that role.

The link carries a random token; only its SHA-256 is stored, so the database never holds a usable link and the lead
sees it once. Taking an invitation is one conditional UPDATE (unused, not withdrawn, not expired) in the transaction
that creates the account and the membership: two people opening the same link at once cannot both get in, and a
refused account (a username taken meanwhile) leaves the invitation unused.
"""
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.models import Invitation, Membership, Project, Role

DEFAULT_DAYS = 7
MAX_DAYS = 30
PENDING_SHOWN = 20


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str  # shown once, in the link


def invitation_create(*, project: Project, user, role: str, email: str = "", days: int = DEFAULT_DAYS) -> NewInvitation:
    if role not in Role.values:
        raise ServiceError(f"Unknown role '{role}'.")
    if not 1 <= days <= MAX_DAYS:
        raise ServiceError(f"An invitation lasts 1 to {MAX_DAYS} days, not {days}.")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(project=project, role=role, email=email.strip(), created_by=user,
                                           token_hash=_hash(token), expires_at=timezone.now() + timedelta(days=days))
    return NewInvitation(invitation=invitation, token=token)


def invitation_revoke(*, invitation: Invitation) -> bool:
    """Withdraw an unused invitation; False when it was used or withdrawn already."""
    return bool(Invitation.objects.filter(pk=invitation.pk, used_at__isnull=True, revoked_at__isnull=True)
                .update(revoked_at=timezone.now()))


def invitations_pending(*, project: Project, limit: int = PENDING_SHOWN) -> list[Invitation]:
    """Invitations that can still be used, newest first."""
    return list(Invitation.objects.filter(project=project, used_at__isnull=True, revoked_at__isnull=True,
                                          expires_at__gt=timezone.now())
                .select_related("created_by").order_by("-id")[:limit])


def invitation_get(*, project: Project, invitation_id: int) -> Invitation:
    return get_object_or_404(Invitation, pk=invitation_id, project=project)


def invitation_for_token(*, project_id: int, token: str) -> Invitation:
    """The invitation behind a link, used or not, or 404 (a wrong token, or another project's)."""
    return get_object_or_404(Invitation.objects.select_related("project"), project_id=project_id,
                             token_hash=_hash(token[:200]), project__archived_at__isnull=True)


def invitation_problem(invitation: Invitation) -> str:
    """Why the link cannot be used any more, in a sentence; empty while it can."""
    if invitation.used_at is not None:
        return f"This invitation was used on {invitation.used_at:%Y-%m-%d}. Each link works once; ask the lead for a new one."
    if invitation.revoked_at is not None:
        return "The lead withdrew this invitation. Ask them for a new link if you still need one."
    if invitation.expires_at <= timezone.now():
        return (f"This invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. Ask the lead for a new "
                "link.")
    return ""


def _take(invitation: Invitation, user) -> None:
    """Mark the invitation used by ``user``, or refuse if someone else took it, it was withdrawn or it expired."""
    taken = Invitation.objects.filter(pk=invitation.pk, used_at__isnull=True, revoked_at__isnull=True,
                                      expires_at__gt=timezone.now()).update(used_at=timezone.now(), used_by=user)
    if not taken:
        invitation.refresh_from_db()
        raise ServiceError(invitation_problem(invitation) or "This invitation cannot be used any more.")


def invitation_accept_new_user(*, invitation: Invitation, username: str, password: str, email: str = ""):
    """Create the account and its membership, all or nothing. The password was checked by the form against
    Django's password validators."""
    User = get_user_model()
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=email, password=password)
            _take(invitation, user)
            Membership.objects.create(user=user, project=invitation.project, role=invitation.role)
    except IntegrityError:
        raise ServiceError(f"The username '{username}' was taken just now; choose another.") from None
    return user


def invitation_accept_existing_user(*, invitation: Invitation, user) -> Membership:
    """A signed-in user joins with their own account. A member already keeps their role and the link stays unused."""
    with transaction.atomic():
        if Membership.objects.filter(user=user, project=invitation.project).exists():
            raise ServiceError(f"You are a member of {invitation.project.name} already; this link stays unused.")
        _take(invitation, user)
        try:
            with transaction.atomic():
                return Membership.objects.create(user=user, project=invitation.project, role=invitation.role)
        except IntegrityError:
            raise ServiceError(f"You are a member of {invitation.project.name} already.") from None
