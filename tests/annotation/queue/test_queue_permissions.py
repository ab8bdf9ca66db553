"""Which tabs a project's members see. Who may open the queue and the item pages is tested for every URL at once, from
the URLconf, in tests/system/test_urlconf_permissions.py."""
from django.urls import reverse


def test_the_tabs_show_the_queue_to_members_and_items_to_leads(client, project, lead, annotator):
    client.force_login(annotator)
    body = client.get(reverse("project_detail", args=[project.id])).content.decode()
    assert "Review queue" in body and reverse("item_list", args=[project.id]) not in body
    client.force_login(lead)
    body = client.get(reverse("project_detail", args=[project.id])).content.decode()
    assert "Review queue" in body and reverse("item_list", args=[project.id]) in body
