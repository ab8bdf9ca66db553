"""Celery workers yield the CPU to web requests (``WORKER_NICENESS``, synthstudio/celery.py): a scoring round sharing
a machine with the web server raised the review queue's tail (bench/RESULTS.md, "Tail under contention")."""
import subprocess
import sys

import psutil
import pytest

from tests.support.runtime import REPO, start_worker, stop_worker, wait_for, worker_env

LOWER = "import django; django.setup(); from synthstudio.celery import worker_priority_lower as f; print(f())"


def run_lower(*, niceness: str, under: int = 0) -> subprocess.CompletedProcess:
    env = worker_env(WORKER_NICENESS=niceness, DJANGO_SETTINGS_MODULE="tests.support.settings")
    return subprocess.run(["nice", "-n", str(under), sys.executable, "-c", LOWER], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("niceness", "under", "expected"), [("10", 0, 10), ("3", 0, 3), ("0", 0, 0), ("5", 12, 12)])
def test_a_worker_raises_its_niceness_to_the_setting_but_never_lowers_it(niceness, under, expected):
    done = run_lower(niceness=niceness, under=under)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == expected


def test_a_niceness_out_of_range_stops_the_process_with_a_message():
    done = run_lower(niceness="25")
    assert done.returncode != 0
    assert "WORKER_NICENESS must be 0-19" in done.stderr


@pytest.mark.slow
def test_a_real_worker_and_its_pool_run_at_the_configured_niceness(transactional_db):
    proc = start_worker(queue="pytest-niceness", env=worker_env(WORKER_NICENESS="7"))
    try:
        worker = psutil.Process(proc.pid)
        wait_for(lambda: len(worker.children()) == 2, what="the worker's two pool processes")
        assert [worker.nice(), *(child.nice() for child in worker.children())] == [7, 7, 7]
    finally:
        stop_worker(proc)
