"""What a visitor sees of other people's projects. Who may open which URL is tested for every URL at once, from the
URLconf, in tests/system/test_urlconf_permissions.py."""
from django.urls import reverse


def test_home_lists_only_my_projects(client, project, outsider):
    client.force_login(outsider)
    body = client.get(reverse("home")).content.decode()
    assert "Other" in body
    assert "Sentiment" not in body
