"""Main pages run a fixed number of queries, whatever the number of projects, members and items."""
import pytest
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


# The overview reads more (the pipeline, the team's pace, the latest work): tests/system/test_query_counts_overview.py.
@pytest.mark.parametrize("page,limit", [("home", 8), ("members", 8), ("project_detail", 10)])
def test_the_query_count_does_not_grow(client, project, lead, django_assert_max_num_queries, page, limit):
    client.force_login(lead)
    url = reverse(page) if page == "home" else reverse(page, args=[project.id])
    small = count_queries(client, url, django_assert_max_num_queries, limit)
    grow(project, lead, 5)
    assert count_queries(client, url, django_assert_max_num_queries, limit) == small
