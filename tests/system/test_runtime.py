"""The two runtimes: real worker processes on the filesystem broker and on Redis, and production settings."""
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.support.runtime import HANG_BOUND, REPO, port_open, require, start_worker, stop_worker, worker_env

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-key-0123456789",
    "ALLOWED_HOSTS": "synthstudio.example.com",
}


def production_env(**overrides) -> dict:
    """This process's environment as production would see it: the browser tests' async switch is not part of it."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {**env, **PRODUCTION, **overrides}


def manage(*args, env, timeout=HANG_BOUND):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_a_real_worker_round_trips_a_task(transactional_db, tmp_path, broker):
    if broker == "redis":
        require(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
        extra = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/15", "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/15"}
    else:
        extra = {"CELERY_BROKER_URL": "filesystem://", "CELERY_BROKER_DIR": str(tmp_path / "broker"),
                 "CELERY_RESULT_BACKEND": f"file://{tmp_path}"}
    env = worker_env(**extra)
    queue = f"roundtrip-{broker}-{os.getpid()}"
    env["CELERY_TASK_DEFAULT_QUEUE"] = queue
    worker = start_worker(queue=queue, env=env, concurrency=1)
    try:
        result = manage("check_worker", "--timeout", "60", env=env)
    finally:
        log = stop_worker(worker)
    assert result.returncode == 0, result.stderr + log
    assert "Worker answered: database=" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", env=production_env(SECRET_KEY=""))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_bad_boolean():
    result = manage("check", env={**os.environ, "DEBUG": "ture"})
    assert result.returncode != 0
    assert "DEBUG='ture' is not a boolean" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_gunicorn_with_the_production_config_serves_the_app(tmp_path, transactional_db):
    """The documented production command: preloaded app, frozen heap, a real request over loopback."""
    env = production_env(ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="false", STATIC_ROOT=str(tmp_path / "static"))
    assert manage("collectstatic", "--noinput", "-v0", env=env).returncode == 0
    # The test opens the listening socket and hands it to gunicorn, so there is no start-up to poll for: the request
    # waits in the socket's backlog until a worker is ready, however long a busy machine takes. Once gunicorn holds the
    # only copy, its exit resets the waiting connection instead of leaving the request hanging.
    listener = socket.create_server(("127.0.0.1", 0))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:synthstudio.gunicorn_conf", "synthstudio.wsgi",
         "--bind", f"fd://{listener.fileno()}", "--workers", "2", "--log-level", "warning"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, pass_fds=[listener.fileno()],
    )
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/accounts/login/"
    listener.close()
    try:
        with urllib.request.urlopen(url, timeout=HANG_BOUND) as response:
            status, body = response.status, response.read()
    except OSError as error:  # refused, reset or an HTTP error: shown below with gunicorn's output
        status, body = error, b""
    finally:
        output = stop_worker(server)
    assert status == 200 and b"csrfmiddlewaretoken" in body, output
    assert "Traceback" not in output, output


def test_the_gunicorn_config_freezes_the_loaded_heap_and_collects_again():
    code = ("import gc, sys; import synthstudio.gunicorn_conf as conf; assert not gc.isenabled(); "
            "import django; django.setup(); assert 'annotation.queue.views' not in sys.modules; "
            "conf.when_ready(None); assert gc.isenabled() and gc.get_freeze_count() > 100000; "
            "assert 'annotation.queue.views' in sys.modules and 'sklearn' in sys.modules; "
            "conf.post_fork(None, None); assert gc.isenabled(); print('ok')")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "synthstudio.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=HANG_BOUND)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
