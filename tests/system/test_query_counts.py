"""Main pages run a fixed number of queries, whatever the number of projects, members and items."""
from django.urls import reverse

from tests.support.factories import add_member, make_item, make_project, make_user


def grow(project, lead, n):
    for i in range(n):
        add_member(project, make_user())
        make_item(project)
        make_project(lead=lead, name=f"extra {i}-{project.pk}-{n}")


def count_queries(client, url, django_assert_max_num_queries, limit):
    with django_assert_max_num_queries(limit) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_home_query_count_does_not_grow(client, project, lead, django_assert_max_num_queries):
    client.force_login(lead)
    small = count_queries(client, reverse("home"), django_assert_max_num_queries, 8)
    grow(project, lead, 5)
    assert count_queries(client, reverse("home"), django_assert_max_num_queries, 8) == small


def test_members_query_count_does_not_grow(client, project, lead, django_assert_max_num_queries):
    client.force_login(lead)
    url = reverse("members", args=[project.id])
    small = count_queries(client, url, django_assert_max_num_queries, 8)
    grow(project, lead, 5)
    assert count_queries(client, url, django_assert_max_num_queries, 8) == small


def test_project_page_query_count_does_not_grow(client, project, lead, django_assert_max_num_queries):
    client.force_login(lead)
    url = reverse("project_detail", args=[project.id])
    small = count_queries(client, url, django_assert_max_num_queries, 8)
    grow(project, lead, 5)
    assert count_queries(client, url, django_assert_max_num_queries, 8) == small
