from django.urls import reverse

from annotation.models import Membership, Role
from tests.support.factories import make_user


def test_lead_adds_a_member_by_username(client, project, lead):
    make_user("newbie")
    client.force_login(lead)
    response = client.post(reverse("members", args=[project.id]), {"identifier": "newbie", "role": "annotator"})
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user__username="newbie").role == Role.ANNOTATOR


def test_lead_adds_a_member_by_email_with_htmx_and_gets_the_panel(client, project, lead):
    make_user("carol", email="Carol@Example.com")
    client.force_login(lead)
    response = client.post(reverse("members", args=[project.id]),
                           {"identifier": "carol@example.com", "role": "lead"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="members-panel">')
    assert "<html" not in body
    assert "carol" in body
    assert Membership.objects.get(project=project, user__username="carol").role == Role.LEAD


def test_unknown_user_gets_a_clear_error_and_nothing_changes(client, project, lead):
    client.force_login(lead)
    before = Membership.objects.count()
    response = client.post(reverse("members", args=[project.id]), {"identifier": "ghost", "role": "annotator"})
    assert response.status_code == 200
    assert "No active user is called or has the e-mail address" in response.content.decode()
    assert Membership.objects.count() == before


def test_the_last_lead_cannot_step_down(client, project, lead):
    client.force_login(lead)
    m = Membership.objects.get(project=project, user=lead)
    response = client.post(reverse("member_update", args=[project.id, m.id]), {"role": "annotator"}, follow=True)
    assert "at least one lead" in response.content.decode()
    m.refresh_from_db()
    assert m.role == Role.LEAD


def test_lead_changes_a_role_and_removes_a_member(client, project, lead, annotator):
    client.force_login(lead)
    m = Membership.objects.get(project=project, user=annotator)
    client.post(reverse("member_update", args=[project.id, m.id]), {"role": "lead"})
    m.refresh_from_db()
    assert m.role == Role.LEAD
    client.post(reverse("member_update", args=[project.id, m.id]), {"role": "lead", "remove": "1"})
    assert not Membership.objects.filter(pk=m.pk).exists()


def test_a_lead_cannot_touch_memberships_of_another_project(client, project, lead, outsider):
    client.force_login(lead)
    other = Membership.objects.get(user=outsider)
    response = client.post(reverse("member_update", args=[project.id, other.id]), {"role": "lead"})
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.role == Role.ANNOTATOR


def test_member_list_without_htmx_is_a_full_page(client, project, lead):
    client.force_login(lead)
    body = client.get(reverse("members", args=[project.id])).content.decode()
    assert "<html" in body and 'id="members-panel"' in body


def test_login_and_logout(client, lead):
    response = client.post(reverse("login"), {"username": "lead", "password": lead.raw_password})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302
