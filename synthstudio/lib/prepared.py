"""Hot queries built by the ORM once per process and re-run with new values.

Building and compiling a queryset with subqueries costs about a millisecond of Python, which on the review queue's
next-item request (the same few queries on every request, only the project, the user and the clock change) was more
than the database's own time. ``Prepared`` builds its SQL once per database vendor by calling ``build`` with marker
values, notes where each marker's value landed among the parameters, and from then on fills those places with the
real values. The SQL stays defined by the ORM (one source of truth with the rest of the code), so a query here cannot
drift from the model's conditions.

Markers are values no real query uses (negative ids far out of range, datetimes in 1971). ``build`` must pass every
varying value through a marker, and its SQL must not depend on the values themselves (no ``if`` on them); constants
such as statuses can appear as they are. The first call checks that every marker was found in the parameters, so a
value that bypassed its marker fails loudly instead of being frozen into the cached SQL.
"""
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import connection

_INT_BASE = -7_301_000_000
_DATETIME_BASE = datetime(1971, 2, 3, 4, 5, 6, tzinfo=UTC)


class Prepared:
    """``Prepared(build, ints=("project", "user"), datetimes=("now",))``; ``sql(**values)`` -> (sql, params).

    ``build(**markers)`` returns (sql, params), typically from ``queryset.query.sql_with_params()``.
    """

    def __init__(self, build: Callable[..., tuple[str, list]], *, ints: tuple[str, ...] = (),
                 datetimes: tuple[str, ...] = ()):
        self.build = build
        self.ints = ints
        self.datetimes = datetimes
        self._compiled: dict[str, tuple[str, list, list[tuple[int, str]]]] = {}
        self._lock = threading.Lock()

    def _markers(self) -> dict:
        markers = {name: _INT_BASE - k for k, name in enumerate(self.ints)}
        markers.update({name: _DATETIME_BASE.replace(microsecond=k + 1) for k, name in enumerate(self.datetimes)})
        return markers

    def _adapt(self, name: str, value):
        return connection.ops.adapt_datetimefield_value(value) if name in self.datetimes else value

    def _compile(self) -> tuple[str, list, list[tuple[int, str]]]:
        markers = self._markers()
        sql, params = self.build(**markers)
        adapted = {name: self._adapt(name, value) for name, value in markers.items()}
        slots = [(i, name) for i, param in enumerate(params) for name, marker in adapted.items()
                 if type(param) is type(marker) and param == marker]
        missing = set(markers) - {name for _, name in slots}
        if missing:
            raise ValueError(f"Prepared query: the markers {sorted(missing)} do not appear in the parameters; "
                             "pass every varying value through its marker.")
        return sql, list(params), slots

    def sql(self, **values) -> tuple[str, list]:
        if set(values) != set(self.ints) | set(self.datetimes):
            raise TypeError(f"Prepared query takes {sorted((*self.ints, *self.datetimes))}, got {sorted(values)}.")
        vendor = connection.vendor
        compiled = self._compiled.get(vendor)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(vendor) or self._compile()
                self._compiled[vendor] = compiled
        sql, params, slots = compiled
        params = list(params)
        for i, name in slots:
            params[i] = self._adapt(name, values[name])
        return sql, params
