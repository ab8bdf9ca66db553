"""Prepared queries (synthstudio/lib/prepared.py): built once per process, re-run with new values.

The cached SQL must be exactly what the ORM builds for the real values, whatever the values; a value that does not go
through its marker must fail at once instead of being frozen into the cache.
"""
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from annotation.models import Item
from annotation.queue import services as queue
from synthstudio.lib.prepared import Prepared

pytestmark = pytest.mark.django_db

MOMENTS = [datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC), datetime(2027, 12, 31, 23, 59, 59, 1, tzinfo=UTC)]


def adapted(sql_params):
    sql, params = sql_params
    return sql, [connection.ops.adapt_datetimefield_value(p) if isinstance(p, datetime) else p for p in params]


@pytest.mark.parametrize("project, user, now", [(1, 2, MOMENTS[0]), (987, 31, MOMENTS[1])])
def test_the_claim_statement_equals_a_fresh_build_for_any_values(project, user, now):
    assert adapted(queue._CLAIM.sql(project=project, user=user, now=now)) == adapted(
        queue._claim_where(project=project, user=user, now=now)
    )


@pytest.mark.parametrize("project, user, now", [(1, 2, MOMENTS[0]), (987, 31, MOMENTS[1])])
def test_the_progress_statement_equals_a_fresh_build_for_any_values(project, user, now):
    values = dict(project=project, user=user, now=now, day_start=now.replace(hour=0), hour_ago=now - timedelta(hours=1),
                  since=now.replace(hour=0) - timedelta(minutes=5))
    assert adapted(queue._PROGRESS.sql(**values)) == adapted(queue._progress_select(**values))


@pytest.mark.parametrize("project", [1, 4242])
def test_the_retraining_check_equals_a_fresh_build_for_any_project(project):
    from annotation.selection import rounds

    assert adapted(rounds._LAST_ROUND.sql(project=project)) == adapted(rounds._last_round_select(project=project))


def test_a_value_that_bypasses_its_marker_is_refused():
    frozen = Prepared(lambda project: Item.objects.filter(project_id=5).query.sql_with_params(), ints=("project",))
    with pytest.raises(ValueError, match="project"):
        frozen.sql(project=5)


def test_the_values_must_be_exactly_the_markers():
    prepared = Prepared(lambda project: Item.objects.filter(project_id=project).query.sql_with_params(),
                        ints=("project",))
    with pytest.raises(TypeError):
        prepared.sql(project=1, user=2)
    sql, params = prepared.sql(project=42)
    assert params == [42] and list(Item.objects.raw(sql, params)) == []
