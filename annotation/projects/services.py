"""Writes to projects and their members: creating a project with its first lead, adding, re-roling and removing
members (a project always keeps one lead)."""
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q

from annotation.errors import ServiceError
from annotation.models import Item, Membership, Project, Role

User = get_user_model()


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
