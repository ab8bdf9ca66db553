"""Real races: calls run at the same moment, each in a thread of its own and so with its own database connection."""
import threading

import pytest
from django.db import connection

from tests.support.runtime import HANG_BOUND


def started_at_once(*calls, refused=()):
    """Start each call in its own thread, released together by a barrier; returns ``finish``, which waits for them
    and returns their results in order. An exception of a type in ``refused`` is returned as the call's result; any
    other fails the test, naming the call it happened in. For a test that must act while the calls run (release a
    lock they wait on); ``at_once`` otherwise."""
    barrier = threading.Barrier(len(calls))
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except refused as exc:
            results[index] = exc
        except Exception as exc:  # reported by finish(), with the call it happened in
            errors.append((index, repr(exc)))
        finally:
            connection.close()  # the thread's own connection, which Django would otherwise leave open

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()

    def finish() -> list:
        for thread in threads:
            thread.join(timeout=HANG_BOUND)
        hung = [i for i, thread in enumerate(threads) if thread.is_alive()]
        if hung:
            pytest.fail(f"calls {hung} not done after {HANG_BOUND:.0f} s, so presumably never")
        assert errors == []
        return results

    return finish


def at_once(*calls, refused=()) -> list:
    """Run the calls at the same moment, each in its own thread; their results in order (see ``started_at_once``)."""
    return started_at_once(*calls, refused=refused)()
