"""Helpers for tests that start real outside parts: a Celery worker process on the test database, the broker a test
sends to, its processes, waiting for what they do, a port check, and the rule that a missing browser or service skips
a test here but fails it in CI."""
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from celery import Celery
from django.db import connection

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"

# Tasks sent by this test process go to a queue of its own, so a developer's running worker (or another test process
# on the same broker, such as another xdist worker) never takes them. Set by conftest before anything is sent: Celery
# caches its queue table on first use.
TEST_QUEUE = f"pytest-{uuid.uuid4().hex[:10]}"


# How long a test waits for a real process to do something before calling it a hang. Tests wait for readiness, never
# for a clock: this bound is far above any normal wait on a busy machine, so reaching it means something is stuck.
HANG_BOUND = 300.0


def wait_for(condition, *, what: str, interval: float = 0.2):
    """Call ``condition`` until it returns something truthy and return that; fail only if it never does (a hang)."""
    deadline = time.monotonic() + HANG_BOUND
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not done after {HANG_BOUND:.0f} s, so presumably never")
        time.sleep(interval)


def require(condition: bool, what: str):
    """Skip a test whose outside part (browser, server) is missing, except in CI, where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available here")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def database_url() -> str:
    """The URL of the test database this process uses, for worker processes that must see the same rows."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url(), "PYTHONPATH": str(REPO)}, **extra)
    return env


def start_worker(*, queue: str, env: dict, concurrency: int = 2, pool: str = "prefork") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "synthstudio", "worker", "-Q", queue, "-c", str(concurrency),
         "-P", pool, "--loglevel", "WARNING", "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop_worker(proc: subprocess.Popen) -> str:
    """Stop a worker, or any server a test started, as an operator would (SIGTERM); return what it printed."""
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


# The Redis database of the tests that kill workers (``Broker``): they share it, so they run one after the other.
REDIS_URL = os.environ.get("REL_REDIS_URL", "redis://127.0.0.1:6379/8")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class Broker:
    """Where the test sends a task and the environment a worker needs to consume it: Redis (``REDIS_URL``, a 2 s
    visibility timeout) or kombu's filesystem transport in ``tmp_path``."""

    def __init__(self, kind: str, tmp_path: Path):
        self.kind = kind
        if kind == "redis":
            require(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
            self.env = {"CELERY_BROKER_URL": REDIS_URL, "CELERY_RESULT_BACKEND": REDIS_URL,
                        "CELERY_VISIBILITY_TIMEOUT": "2"}
            self.url, self.options = REDIS_URL, {"visibility_timeout": 2}
        else:
            root = tmp_path / "broker"
            for sub in ("queue", "processed", "control"):
                (root / sub).mkdir(parents=True)
            self.env = {"CELERY_BROKER_URL": "filesystem://", "CELERY_BROKER_DIR": str(root),
                        "CELERY_RESULT_BACKEND": f"file://{tmp_path}"}
            self.url = "filesystem://"
            self.options = {"data_folder_in": str(root / "queue"), "data_folder_out": str(root / "queue"),
                            "processed_folder": str(root / "processed"), "control_folder": str(root / "control")}

    def send(self, name: str, *args, queue: str) -> None:
        app = Celery("reliability-sender", set_as_current=False)
        app.conf.broker_transport_options = self.options
        # An explicit connection: Celery would otherwise take CELERY_BROKER_URL from this process's environment.
        with app.connection_for_write(self.url) as broker_connection:
            app.send_task(name, args=list(args), queue=queue, task_id=f"rel-{uuid.uuid4()}",
                          connection=broker_connection)
        app.close()
