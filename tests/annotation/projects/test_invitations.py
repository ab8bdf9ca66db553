"""Invitations: a lead makes a single-use, expiring link with a role on the Members page; the invitee sets a username
and password (Django's validators) or joins with their own account; used, expired and withdrawn links are refused
with a page that says why; two people racing for one link cannot both get in."""
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.models import Invitation, Membership, Role
from annotation.projects import invitations
from tests.support.concurrency import at_once
from tests.support.factories import make_project, make_user
from tests.support.visits import VISITORS, visitor_client

User = get_user_model()
HX = {"HX-Request": "true"}
PASSWORD = "a-long-unusual-passphrase-7"


def make_link(client, project, **data) -> str:
    response = client.post(reverse("invitation_create", args=[project.id]),
                           {"role": "annotator", "days": 7, **data}, headers=HX)
    assert response.status_code == 200
    found = re.search(r'id="invite-link" value="([^"]+)"', response.content.decode())
    assert found, "the new link is shown"
    return found.group(1)


def path_of(link: str) -> str:
    return link.split("testserver", 1)[1]


def sign_up(client, link, username="newcomer", password=PASSWORD, email="new@example.com"):
    return client.post(path_of(link), {"username": username, "email": email, "password1": password,
                                       "password2": password})


def test_a_lead_makes_a_link_and_the_invitee_becomes_a_member_with_its_role(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project, role="lead", email="dana@example.com")
    assert link.startswith(f"http://testserver/projects/{project.id}/join/")
    invitation = Invitation.objects.get(project=project)
    assert invitation.token_hash not in link and link.rsplit("/", 2)[1] not in invitation.token_hash  # hash only
    assert invitation.expires_at - timezone.now() > timedelta(days=6, hours=23)

    visitor = Client()
    page = visitor.get(path_of(link)).content.decode()
    assert "You are invited as <strong>lead</strong>" in page and 'value="dana@example.com"' in page
    response = sign_up(visitor, link, username="dana")
    assert response.status_code == 302 and response["Location"] == reverse("project_detail", args=[project.id])
    dana = User.objects.get(username="dana")
    assert dana.check_password(PASSWORD) and dana.email == "new@example.com"
    assert Membership.objects.get(user=dana, project=project).role == Role.LEAD
    assert visitor.get(reverse("project_detail", args=[project.id])).status_code == 200  # signed in
    invitation.refresh_from_db()
    assert invitation.used_by == dana and invitation.used_at is not None


def test_the_link_is_shown_once_and_open_invitations_can_be_withdrawn(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project)
    members = client.get(reverse("members", args=[project.id])).content.decode()
    assert link not in members and "Withdraw" in members
    invitation = Invitation.objects.get(project=project)
    response = client.post(reverse("invitation_revoke", args=[project.id, invitation.id]), headers=HX)
    assert "Invitation withdrawn" in response.content.decode()
    refused = Client().get(path_of(link))
    assert refused.status_code == 410 and "The lead withdrew this invitation" in refused.content.decode()
    assert sign_up(Client(), link).status_code == 410
    assert not User.objects.filter(username="newcomer").exists()


def test_without_javascript_the_members_page_shows_the_new_link(client, project, lead):
    client.force_login(lead)
    response = client.post(reverse("invitation_create", args=[project.id]), {"role": "annotator", "days": 3})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body and 'id="invite-link"' in body


def test_a_weak_password_is_refused_by_djangos_validators_and_the_link_stays_unused(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project)
    response = sign_up(Client(), link, username="weakling", password="password")
    body = response.content.decode()
    assert response.status_code == 200 and "This password is too common." in body
    response = sign_up(Client(), link, username="weakling", password="weakling1")
    assert "too similar to the username" in response.content.decode()
    assert not User.objects.filter(username="weakling").exists()
    assert Invitation.objects.get(project=project).used_at is None


def test_a_taken_username_is_refused_ignoring_case(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project)
    response = sign_up(Client(), link, username="LEAD")
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert Invitation.objects.get(project=project).used_at is None


def test_a_used_link_is_refused_with_a_clear_page(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project)
    assert sign_up(Client(), link).status_code == 302
    again = sign_up(Client(), link, username="second")
    assert again.status_code == 410 and "This invitation was used on" in again.content.decode()
    assert not User.objects.filter(username="second").exists()


def test_an_expired_link_is_refused_with_a_clear_page(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project, days=1)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    response = Client().get(path_of(link))
    assert response.status_code == 410 and "This invitation expired on" in response.content.decode()
    assert sign_up(Client(), link).status_code == 410
    assert not User.objects.filter(username="newcomer").exists()


def test_a_wrong_token_or_another_projects_project_is_not_found(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project)
    token = link.rstrip("/").rsplit("/", 1)[1]
    other = make_project(lead=lead, name="Elsewhere")
    assert Client().get(reverse("invitation_accept", args=[project.id, token[:-2] + "xx"])).status_code == 404
    assert Client().get(reverse("invitation_accept", args=[other.id, token])).status_code == 404


def test_a_signed_in_user_joins_with_their_own_account(client, project, lead):
    client.force_login(lead)
    link = make_link(client, project, role="lead")
    someone = make_user("someone")
    visitor = Client()
    visitor.force_login(someone)
    assert "Join as someone" in visitor.get(path_of(link)).content.decode()
    assert visitor.post(path_of(link), {"join": "1"}).status_code == 302
    assert Membership.objects.get(user=someone, project=project).role == Role.LEAD


def test_a_member_opening_a_link_keeps_their_role_and_the_link_stays_unused(client, project, lead, annotator):
    client.force_login(lead)
    link = make_link(client, project, role="lead")
    visitor = Client()
    visitor.force_login(annotator)
    response = visitor.post(path_of(link), {"join": "1"})
    assert response.status_code == 410 and "member of Sentiment already" in response.content.decode()
    assert Membership.objects.get(user=annotator, project=project).role == Role.ANNOTATOR
    assert Invitation.objects.get(project=project).used_at is None


def test_invitation_rules_are_enforced_by_the_service(project, lead):
    with pytest.raises(ServiceError, match="1 to 30 days"):
        invitations.invitation_create(project=project, user=lead, role=Role.ANNOTATOR, days=31)
    with pytest.raises(ServiceError, match="Unknown role"):
        invitations.invitation_create(project=project, user=lead, role="owner")


def test_names_and_notes_stay_text(client, lead):
    project = make_project(lead=lead, name="<script>alert(1)</script>")
    client.force_login(lead)
    link = make_link(client, project, email="x@example.com")
    body = Client().get(path_of(link)).content.decode()
    assert "<script>alert(1)" not in body and "&lt;script&gt;" in body


@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("name", ["invitation_create", "invitation_revoke"])
def test_only_a_lead_makes_or_withdraws_invitations(request, client, project, lead, who, name):
    new = invitations.invitation_create(project=project, user=lead, role=Role.LEAD)
    args = [project.id] if name == "invitation_create" else [project.id, new.invitation.id]
    client = visitor_client(request, client, who)
    response = client.post(reverse(name, args=args), {"role": "lead", "days": 7})
    expected = {"lead": (200, 302), "annotator": (403,), "outsider": (404,), "anonymous": (302,)}[who]
    assert response.status_code in expected
    if who != "lead":
        assert Invitation.objects.filter(project=project).count() == 1
        assert Invitation.objects.get(project=project).revoked_at is None
        if who == "anonymous":
            assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", VISITORS)
def test_anyone_with_the_link_may_open_it(request, client, project, lead, who):
    new = invitations.invitation_create(project=project, user=lead, role=Role.ANNOTATOR)
    client = visitor_client(request, client, who)
    assert client.get(reverse("invitation_accept", args=[project.id, new.token])).status_code == 200


def test_two_people_racing_for_one_link_cannot_both_get_in(transactional_db):
    lead = make_user("lead")
    project = make_project(lead=lead)
    new = invitations.invitation_create(project=project, user=lead, role=Role.ANNOTATOR)
    invitation = Invitation.objects.get(pk=new.invitation.pk)

    def accept(name):
        return lambda: invitations.invitation_accept_new_user(invitation=invitation, username=name,
                                                              password=PASSWORD, email=f"{name}@example.com")

    results = at_once(accept("ann"), accept("bob"), accept("cid"), refused=ServiceError)
    winners = [r for r in results if not isinstance(r, ServiceError)]
    assert len(winners) == 1
    assert all("was used on" in str(r) for r in results if isinstance(r, ServiceError))
    # The losers' accounts were rolled back with their attempt: nothing half-made.
    assert list(User.objects.filter(username__in=["ann", "bob", "cid"]).values_list("username", flat=True)) == \
        [winners[0].username]
    assert Membership.objects.filter(project=project, role=Role.ANNOTATOR).count() == 1
