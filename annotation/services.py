"""Writes that touch several rows or have side effects: projects, memberships and item state changes.

Every status change of an item goes through ``item_transition`` (or a service built on it), which checks the state
machine on ``Item``, bumps the version and appends a ``Review`` row in the same transaction. Imports are created in
bulk by ``annotation/importing.py``.
"""
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Item, Membership, Project, Review, Role, Status

User = get_user_model()


class ServiceError(Exception):
    """A request that cannot be carried out, with a message fit to show the user."""


class StaleItem(ServiceError):
    """The item changed since the user loaded it."""


def item_snapshot(item: Item) -> dict:
    return {
        "status": item.status,
        "text": item.text,
        "labels": list(item.final_labels or item.proposed_labels),
        "version": item.version,
    }


@transaction.atomic
def project_create(*, name: str, lead, description: str = "", multi_label: bool = False) -> Project:
    project = Project.objects.create(name=name, description=description, multi_label=multi_label, created_by=lead)
    Membership.objects.create(user=lead, project=project, role=Role.LEAD)
    return project


def _find_user(identifier: str):
    identifier = identifier.strip()
    if not identifier:
        raise ServiceError("Give a username or an e-mail address.")
    users = list(User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier), is_active=True)[:2])
    if not users:
        raise ServiceError(f"No active user is called or has the e-mail address '{identifier}'.")
    if len(users) > 1:
        raise ServiceError(f"'{identifier}' matches more than one user; use the username.")
    return users[0]


def membership_add(*, project: Project, identifier: str, role: str) -> Membership:
    """Add a user (by username or e-mail) to the project, or change their role if they are already in it."""
    if role not in Role.values:
        raise ServiceError(f"Unknown role '{role}'.")
    user = _find_user(identifier)
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            user=user, project=project, defaults={"role": role}
        )
        if not created and membership.role != role:
            membership_set_role(membership=membership, role=role)
    return membership


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ServiceError(f"Unknown role '{role}'.")
    if membership.role == Role.LEAD and role != Role.LEAD:
        _refuse_last_lead(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    if membership.role == Role.LEAD:
        _refuse_last_lead(membership)
    Item.objects.filter(project=membership.project, claimed_by=membership.user).update(
        claimed_by=None, lease_expires_at=None
    )
    membership.delete()


def _refuse_last_lead(membership: Membership) -> None:
    leads = Membership.objects.select_for_update().filter(project=membership.project, role=Role.LEAD)
    if leads.exclude(pk=membership.pk).count() == 0:
        raise ServiceError("A project needs at least one lead; make someone else lead first.")


def item_transition(
    *,
    item: Item,
    to: str,
    action: str,
    user=None,
    reason: str = "",
    note: str = "",
    final_labels: list[str] | None = None,
    text: str | None = None,
    time_spent_ms: int | None = None,
) -> Review:
    """Move one item to a new status (checked by the state machine) and log it; the caller holds the transaction."""
    before = item_snapshot(item)
    item.move_to(to)
    fields = ["status", "version", "updated_at"]
    if final_labels is not None:
        item.final_labels = final_labels
        fields.append("final_labels")
    if text is not None and text != item.text:
        item.text = text
        item.content_hash = ""  # recomputed by Item.save
        fields += ["text", "content_hash"]
    if to in (Status.ACCEPTED, Status.REJECTED):
        item.reviewed_at = timezone.now()
        fields.append("reviewed_at")
    item.save(update_fields=fields)
    return Review.objects.create(
        item=item,
        project_id=item.project_id,
        user=user,
        action=action,
        before=before,
        after=item_snapshot(item),
        reason=reason,
        note=note,
        time_spent_ms=time_spent_ms,
        is_audit=item.is_audit,
    )
