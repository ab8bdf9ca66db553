"""The permission matrix for the review queue and the item browser (lead / annotator / outsider / anonymous)."""
import pytest
from django.urls import reverse

from annotation.models import Item, Status
from tests.annotation.projects.test_permissions import VISITORS, visitor_client
from tests.support.factories import make_item

# (url name, method, expected status for lead, annotator, outsider, anonymous)
MATRIX = [
    ("queue", "get", {"lead": 200, "annotator": 200, "outsider": 404, "anonymous": 302}),
    ("queue_review", "post", {"lead": 302, "annotator": 302, "outsider": 404, "anonymous": 302}),
    ("queue_undo", "post", {"lead": 302, "annotator": 302, "outsider": 404, "anonymous": 302}),
    ("item_list", "get", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
    ("item_detail", "get", {"lead": 200, "annotator": 403, "outsider": 404, "anonymous": 302}),
]


def url_for(name, project, item):
    if name in ("queue_review", "item_detail"):
        return reverse(name, args=[project.id, item.id])
    return reverse(name, args=[project.id])


@pytest.mark.parametrize("who", VISITORS)
@pytest.mark.parametrize("name,method,expected", MATRIX, ids=[f"{m[0]}-{m[1]}" for m in MATRIX])
def test_permission_matrix(request, client, project, who, name, method, expected):
    item = make_item(project)
    c = visitor_client(request, client, who)
    data = {"action": "accept", "version": item.version} if method == "post" else None
    response = getattr(c, method)(url_for(name, project, item), data)
    assert response.status_code == expected[who]
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login"))
    if name == "queue_review" and who in ("outsider", "anonymous"):
        assert Item.objects.get(pk=item.pk).status == Status.NEEDS_REVIEW


def test_an_item_of_another_project_is_404_on_the_item_page(client, project, lead, outsider):
    from annotation.models import Project
    foreign = make_item(Project.objects.get(name="Other"))
    client.force_login(lead)
    assert client.get(reverse("item_detail", args=[project.id, foreign.id])).status_code == 404


def test_the_tabs_show_the_queue_to_members_and_items_to_leads(client, project, lead, annotator):
    client.force_login(annotator)
    body = client.get(reverse("project_detail", args=[project.id])).content.decode()
    assert "Review queue" in body and reverse("item_list", args=[project.id]) not in body
    client.force_login(lead)
    body = client.get(reverse("project_detail", args=[project.id])).content.decode()
    assert "Review queue" in body and reverse("item_list", args=[project.id]) in body
