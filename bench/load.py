"""Sixteen annotators at once on a million-item project, over real HTTP: latency, throughput, no double claims.

    createdb -h 127.0.0.1 -U postgres ss_scale_bench      # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ss_scale_bench python bench/load.py --items 1000000 --seconds 60

For each size in ``--items`` (a comma-separated list, e.g. ``10000,100000,1000000``) the bench:

1. **builds** a project with COPY (PostgreSQL only): six labels, 70% auto-accepted, 10% accepted and 2% rejected by
   people (one Review each), 13% waiting for review (four in five scored with an ambiguity; at least 6,000 items, so
   that small projects do not run dry during the load phases), 3% filtered, 2% proposed, and 0.02% overlap items
   owed a second opinion, from 20 generation jobs; then ``VACUUM ANALYZE``, as autovacuum would have done, and a
   ``CHECKPOINT``, so that the bulk load's writes are on disk before anything is timed (each load phase starts with
   one too, after the previous phase's writes);
2. **serves** the app with gunicorn and its production config (``synthstudio/gunicorn_conf.py``: preloaded app, frozen
   heap; ``--workers`` gthread workers of ``--threads`` threads) in a child process with
   production settings (``DEBUG=false``, whitenoise static files from a fresh ``collectstatic``), on 127.0.0.1 only;
3. **browse** (``--mode browse`` or ``all``): a lead, logged in through the login form, times the item browser's first
   page and a deep keyset page (with and without a status filter), an item, the dashboard (its snapshots computed
   first, as the Celery task would), the home and project pages, import and export, generation jobs (the oldest and
   the newest job's page), labels and settings: ``--requests`` times each, one at a time, median and max;
4. **load** (``--mode load`` or ``all``): ``--annotators`` threads, each a browser session that logs in through the
   form and works the queue for ``--seconds`` (or until ``--max-submits`` in all), looking at each item for
   ``--think`` seconds on average (0: as fast as the server answers): ``GET queue/`` with
   ``HX-Request`` (what the page's "check again" link sends; it claims the next item) then the review form's POST
   (accept 80%, edit the label 10%, reject with a reason 10%). With ``--flow split`` (default) the POST is the no-JS
   form post (302, saves only) so that claim and save are timed apart; with ``--flow htmx`` it carries ``HX-Request``
   and its answer already holds the next claimed item, as in the browser with JS (one request per item). With a
   think time, each annotator starts at a random moment of its first look (``--start staggered``, default), as people
   arrive; ``--start simultaneous`` sends all first requests at the same instant (a burst of 16 on a 2-core machine);
5. **verifies** that no item was handed to two annotators at the same time (each annotator records when it received
   an item and when it sent the review; two such spans of different annotators on one item must not overlap), that no
   item got more decisions than it needs reviews, that every submit the app confirmed has its Review row by that
   annotator, with that action, and that the item's status matches; then deletes everything it made.

With ``--round`` (or ``--round nice``) a scoring round of the same project runs during each load phase, back to back
for the whole phase, in a child process as a Celery worker would run it (``nice``: at the CPU priority a worker gives
itself, ``WORKER_NICENESS`` 10; ``plain``: as workers ran before, at the web server's priority; ``nice-skip-held``: also
routing with ``items_change(skip_held=True)``, which leaves the items reviewers hold unlocked); meanwhile PostgreSQL's ``pg_stat_activity`` is sampled every 20 ms for
statements waiting (on a lock, the WAL, I/O), counted by wait event and statement. ``--round-only`` runs that phase alone.

Latencies are measured by the client (they include the client's own Python time) and by gunicorn's access log (time
in the worker). The load average is recorded before and after each phase: on a shared 2-core machine, read the numbers
with it. The last line printed is one JSON object with every figure.
"""
import argparse
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from common import LABELS, REPO, WORDS, items_copy, project_remove, setup_django

HOST = "127.0.0.1"
REJECT_REASONS = ["wrong_label", "low_quality", "duplicate"]
HISTORIC_REVIEWERS = 3


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentiles(samples: list[float]) -> dict:
    """p50/p95/p99/max in milliseconds of samples in seconds."""
    if not samples:
        return {"n": 0}
    ms = sorted(s * 1000 for s in samples)
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"n": len(ms), "p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1),
            "max": round(ms[-1], 1)}


# --- Building the project --------------------------------------------------------------------------------------------

# Columns the generator fills per row; every other column of the item table gets its model default.
VARYING = ("text", "source", "status", "proposed_labels", "llm_confidence", "model_label", "model_scores", "ambiguity",
           "route_reason", "scored_round", "final_labels", "content_hash", "reviews_required", "review_count",
           "generation_job_id")
JOBS = 20
MIN_WAITING = 6000


def item_rows(n: int, job_ids: list[int], seed: int = 8):
    """Values of ``VARYING`` for n items, as COPY text fields; the items come from the jobs in turn, oldest first."""
    rng = random.Random(seed)
    overlap_every = 5000  # 0.02% of items are overlap items owed a second opinion
    # 13% wait for review, but never fewer than MIN_WAITING: the queue must not run dry during the load phases.
    waiting = max(0.13, min(0.9, MIN_WAITING / n))
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        roll = rng.random() * 0.87  # the mix of the items that do not wait
        ambiguity, scored, final, required, count = "\\N", "\\N", "[]", "1", "0"
        if i % overlap_every == overlap_every - 1:
            status, final, required, count = "accepted", json.dumps([label]), "2", "1"
        elif rng.random() < waiting:
            status = "needs_review"
        elif roll < 0.70:
            status = "auto_accepted"
        elif roll < 0.80:
            status, final, count = "accepted", json.dumps([label]), "1"
        elif roll < 0.82:
            status, count = "rejected", "1"
        elif roll < 0.85:
            status = "filtered"
        else:
            status = "proposed"
        if status != "proposed" and (status != "needs_review" or rng.random() < 0.8):
            ambiguity, scored = f"{rng.random():.6f}", "1"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))) + f" {i}?"
        confidence = f"{rng.uniform(0.3, 1.0):.3f}"
        scores = f'{{"margin": {rng.random():.3f}, "entropy": {rng.random():.3f}}}'
        yield "\t".join((text, "llm", status, f'["{label}"]', confidence, label, scores, ambiguity,
                         "uncertainty" if status == "needs_review" else "", scored, final, f"{i:064x}", required,
                         count, str(job_ids[i * len(job_ids) // n])))


def build(n: int, annotators: int, password: str) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction

    from annotation.models import Item, Label, Membership, Role
    from annotation.projects import services
    from generation.models import GenerationJob, JobMode, JobStatus

    tag = f"{os.getpid()}-{n}"
    User = get_user_model()
    hashed = make_password(password)  # hashed once: every bench user has the same password
    users = User.objects.bulk_create(
        User(username=name, password=hashed)
        for name in [f"scale-lead-{tag}", *(f"scale-ann{k}-{tag}" for k in range(annotators)),
                     *(f"scale-past{k}-{tag}" for k in range(HISTORIC_REVIEWERS))]
    )
    users = list(User.objects.filter(username__in=[u.username for u in users]).order_by("id"))
    lead, team, past = users[0], users[1:1 + annotators], users[1 + annotators:]
    project = services.project_create(name=f"Scale bench {n:,}", lead=lead)
    Membership.objects.bulk_create(Membership(user=u, project=project, role=Role.ANNOTATOR) for u in team + past)
    Label.objects.bulk_create(Label(project=project, name=name, hotkey=str(k + 1), order=k)
                              for k, name in enumerate(LABELS))

    jobs = GenerationJob.objects.bulk_create(
        GenerationJob(project=project, created_by=lead, mode=JobMode.values[0], status=JobStatus.SUCCEEDED,
                      requested=n // JOBS, produced=n // JOBS) for _ in range(JOBS)
    )
    started = time.perf_counter()
    table = connection.ops.quote_name(Item._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        items_copy(project=project, columns=VARYING, rows=item_rows(n, [job.pk for job in jobs]))
        copy_s = time.perf_counter() - started
        # One decision per item people decided, by three past reviewers, spread over 30 days (never today, so the
        # annotators' own "today" counters start at zero).
        cursor.execute(
            """
            INSERT INTO annotation_review (item_id, project_id, user_id, action, before, after, reason, note, is_audit,
                                           created_at)
            SELECT id, project_id, (%s::bigint[])[1 + id %% 3],
                   CASE WHEN status = 'rejected' THEN 'reject' ELSE 'accept' END, '{}'::jsonb,
                   jsonb_build_object('status', status, 'labels', final_labels, 'version', version),
                   CASE WHEN status = 'rejected' THEN 'low_quality' ELSE '' END, '', false,
                   now() - (1 + id %% 30) * interval '1 day'
            FROM annotation_item WHERE project_id = %s AND status IN ('accepted', 'rejected')
            """,
            [[u.pk for u in past], project.pk],
        )
        reviews = cursor.rowcount
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("VACUUM ANALYZE annotation_review")
    return {"project": project, "lead": lead, "team": team, "past": past, "users": users, "jobs": jobs, "items": n,
            "reviews": reviews, "copy_s": round(copy_s, 1), "build_s": round(time.perf_counter() - started, 1),
            "checkpointed": checkpoint()}


def checkpoint() -> bool:
    """Write the build's dirty pages out now, so the timed phases do not share the disk with the checkpoint of a bulk
    load (on this machine its writes made commits wait 100-140 ms for the WAL flush). CHECKPOINT needs a superuser or
    the pg_checkpoint role; False if the bench's database user may not. Then flushes the machine's page cache."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError:
        return False
    finally:
        os.sync()  # and the operating system's own dirty pages (the database runs on this machine)
    return True


# --- Serving ---------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """gunicorn in a child process with production settings; only ever bound to 127.0.0.1."""

    def __init__(self, *, workers: int, threads: int):
        self.dir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
        self.port = free_port()
        self.log = self.dir / "access.log"
        self.env = {
            **os.environ, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": HOST,
            "SECURE_SSL_REDIRECT": "false", "SYNTHSTUDIO_VAR_DIR": str(self.dir / "var"),
            "STATIC_ROOT": str(self.dir / "static"), "LOG_LEVEL": "WARNING",
        }
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=REPO, env=self.env,
                       check=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:synthstudio.gunicorn_conf", "synthstudio.wsgi:application",
             "--bind", f"{HOST}:{self.port}",
             "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
             "--access-logfile", str(self.log), "--access-logformat", "%(m)s %(U)s %(s)s %(M)s",
             "--log-level", "warning"],
            cwd=REPO, env=self.env, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited at start")
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not start listening within 60 s")

    def log_offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def server_times(self, since: int) -> dict[str, list[float]]:
        """Worker-side request times (seconds) from the access log, by request kind, after byte offset ``since``."""
        kinds: dict[str, list[float]] = {}
        with open(self.log, encoding="utf-8") as f:
            f.seek(since)
            for line in f:
                method, path, status, ms = line.split()
                kind = ("submit" if "/queue/items/" in path else "next_item" if path.endswith("/queue/") else "other")
                kinds.setdefault(kind, []).append(int(ms) / 1000)
        return kinds

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- A browser session -----------------------------------------------------------------------------------------------

ITEM = re.compile(r'data-item="(\d+)"\s+data-version="(\d+)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# A message as templates/_messages.html writes it (an error's text may follow a visually hidden "Error: ").
MESSAGE = re.compile(r'<p class="message ([a-z ]*)"[^>]*>(?:<span class="visually-hidden">[^<]*</span>)?([^<]*)</p>')
DONE = re.compile(r"(Accepted|Saved your edit of|Rejected) item (\d+)\.")


class Browser:
    """One person's tab: a keep-alive connection and a cookie jar (the production cookies are ``Secure``; the bench
    talks plain HTTP on loopback, so it keeps them itself, as a browser would on an https site)."""

    def __init__(self, port: int):
        self.port = port
        self.origin = f"http://{HOST}:{port}"
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(self, method: str, path: str, form: dict | list | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            headers.update({"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin})
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            # The server closed a kept-alive connection; a browser reconnects and sends again.
            self.conn.close()
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        text = response.read().decode()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                for key, morsel in SimpleCookie(value).items():
                    if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.value
        return response.status, response.getheader("Location"), text

    def login(self, username: str, password: str) -> None:
        status, _, page = self.request("GET", "/accounts/login/")
        token = CSRF_INPUT.search(page).group(1)
        status, location, _ = self.request("POST", "/accounts/login/", {
            "username": username, "password": password, "csrfmiddlewaretoken": token, "next": ""})
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login of {username} failed ({status})")

    def get(self, path: str, *, htmx: bool = False) -> tuple[int, str]:
        status, _, text = self.request("GET", path, headers={"HX-Request": "true"} if htmx else None)
        token = CSRF_INPUT.search(text)
        if token:
            self.csrf = token.group(1)
        return status, text


# --- The load phase --------------------------------------------------------------------------------------------------

@dataclass
class Annotator:
    """What one simulated annotator did, with monotonic timestamps."""

    user_id: int
    username: str
    next_item: list[float] = field(default_factory=list)
    submit: list[float] = field(default_factory=list)
    # (item id, received at, review sent at): the span in which this annotator surely held the item.
    held: list[tuple[int, float, float]] = field(default_factory=list)
    # (item id, action, second opinion?) of each review the app confirmed.
    confirmed: list[tuple[int, str, bool]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    empty: int = 0


def _pick_action(rng: random.Random, shown: list[str]) -> tuple[str, dict]:
    roll = rng.random()
    if roll < 0.1:
        return "reject", {"reason": rng.choice(REJECT_REASONS)}
    if roll < 0.2:
        other = [name for name in LABELS if name not in shown]
        return "edit", {"labels": rng.choice(other)}
    return "accept", {"labels": shown[0] if shown else LABELS[0]}


SHOWN = re.compile(r'name="labels"\s+value="([^"]+)" id="label-\d+" data-hotkey="[^"]*"\s+checked')


def _confirmations(annotator: Annotator, html: str, pending: dict) -> None:
    """Match the page's messages with the review we sent last (``pending``), then forget it."""
    if not pending:
        return
    for tags, text in MESSAGE.findall(html):
        done = DONE.search(text)
        if done and int(done.group(2)) == pending["item"]:
            annotator.confirmed.append((pending["item"], pending["action"], pending["second"]))
            pending.clear()
            return
        if "error" in tags:
            annotator.refused.append(text)
            pending.clear()
            return
    annotator.errors.append(f"no confirmation for item {pending['item']}")
    pending.clear()


def annotate(*, browser: Browser, annotator: Annotator, project_id: int, flow: str, think: float, deadline: float,
             budget: "Budget", seed: int, stagger: bool) -> None:
    rng = random.Random(seed)
    queue = f"/projects/{project_id}/queue/"
    pending: dict = {}
    html = ""
    received = 0.0  # when the page now in ``html`` arrived (set with each submit's answer)
    if stagger and think:
        # People do not all press "next" in the same millisecond: each starts at a random moment of one look.
        time.sleep(rng.uniform(0, think))
    try:
        while time.monotonic() < deadline:
            if not html:
                t0 = time.monotonic()
                status, html = browser.get(queue, htmx=True)
                t1 = time.monotonic()
                annotator.next_item.append(t1 - t0)
                if status != 200:
                    annotator.errors.append(f"queue GET {status}")
                    return
            else:
                t1 = received
            _confirmations(annotator, html, pending)
            found = ITEM.search(html)
            if not found:
                annotator.empty += 1
                html = ""
                time.sleep(0.2)
                continue
            if not budget.take():
                return
            if think:
                time.sleep(rng.uniform(0.5, 1.5) * think)
            item_id, version = int(found.group(1)), found.group(2)
            second = 'class="badge overlap"' in html
            shown = SHOWN.findall(html)
            action, extra = _pick_action(rng, shown)
            form = {"csrfmiddlewaretoken": browser.csrf, "version": version, "time_spent_ms": "900", "action": action,
                    **extra}
            headers = {"HX-Request": "true", "X-CSRFToken": browser.csrf} if flow == "htmx" else {}
            sent = time.monotonic()
            annotator.held.append((item_id, t1, sent))
            status, _, text = browser.request("POST", f"/projects/{project_id}/queue/items/{item_id}/", form, headers)
            received = time.monotonic()
            annotator.submit.append(received - sent)
            pending = {"item": item_id, "action": action, "second": second}
            expected = 200 if flow == "htmx" else 302
            if status != expected:
                annotator.errors.append(f"submit {status}")
                return
            html = text if flow == "htmx" else ""
        if pending and not html:
            # The last review's message is shown by the next page, as it would be to the person.
            _, html = browser.get(queue, htmx=True)
        _confirmations(annotator, html, pending)
    except Exception as exc:  # a crashed annotator is reported, never silently dropped
        annotator.errors.append(f"{type(exc).__name__}: {exc}")


class Budget:
    """At most ``n`` submits in all, shared by the annotators."""

    def __init__(self, n: int):
        self.left = n
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


class RoundsAlongside:
    """Scoring rounds of the project back to back in a child process (as a Celery worker runs them) until stopped, and
    a sampler of the statements waiting in PostgreSQL, for the length of a load phase."""

    def __init__(self, project_id: int, *, nice: bool, skip_held: bool = False):
        self.stop_file = Path(tempfile.mkstemp(prefix="rounds-stop-")[1])
        self.stop_file.unlink()
        cmd = [sys.executable, __file__, "--round-child", str(project_id), "--round-stop", str(self.stop_file)]
        # WORKER_NICENESS=0: the child runs as a worker did before it lowered its own priority.
        env = {**os.environ, "WORKER_NICENESS": "10" if nice else "0",
               "BENCH_ROUND_SKIP_HELD": "1" if skip_held else ""}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        self.waits: dict[str, int] = {}
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            while not self._done.wait(0.02):
                cursor.execute("SELECT wait_event_type || ':' || wait_event || ' ' || left(query, 50) "
                               "FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
                               "AND wait_event IS NOT NULL AND pid <> pg_backend_pid()")
                self.samples += 1
                for (query,) in cursor.fetchall():
                    key = " ".join(query.split())
                    self.waits[key] = self.waits.get(key, 0) + 1
        connection.close()

    def finish(self) -> dict:
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=3600)
        self.stop_file.unlink(missing_ok=True)
        self._done.set()
        self._thread.join()
        rounds = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return {"rounds": rounds, "wait_samples": self.samples,
                "waits": dict(sorted(self.waits.items(), key=lambda kv: -kv[1])[:10])}


def rounds_child(project_id: int, stop: Path) -> None:
    """Run rounds of the project one after the other until ``stop`` exists; one JSON line per round."""
    setup_django()
    from annotation.models import Project
    from annotation.selection.rounds import selection_run_round
    from synthstudio.celery import worker_priority_lower

    worker_priority_lower()  # what a Celery worker does at start (WORKER_NICENESS)
    if os.environ.get("BENCH_ROUND_SKIP_HELD"):
        # The routing writes as they would be with items_change(skip_held=True) in annotation/selection/rounds.py.
        import functools

        from annotation.items.services import items_change
        from annotation.selection import rounds

        rounds.items_change = functools.partial(items_change, skip_held=True)

    project = Project.objects.get(pk=project_id)
    while not stop.exists():
        t0 = time.perf_counter()
        done = selection_run_round(project=project, trigger="manual")
        print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), "ran": done is not None,
                          "items_scored": getattr(done, "items_scored", 0)}), flush=True)


def run_load(*, built: dict, server: Server, password: str, seconds: float, max_submits: int, flow: str,
             think: float, start: str = "staggered", rounds: str = "") -> dict:
    project_id = built["project"].pk
    people = [Annotator(user_id=u.pk, username=u.username) for u in built["team"]]
    browsers = []
    for person in people:
        browser = Browser(server.port)
        browser.login(person.username, password)
        browser.get(f"/projects/{project_id}/queue/")  # the full page, as when the person opens it
        browsers.append(browser)
    from django.utils import timezone

    # Each phase starts from a flushed disk: the build, or the phase before (flat out, thousands of reviews a minute).
    checkpointed = checkpoint()
    started_at = timezone.now()
    offset = server.log_offset()
    load_before = loadavg()
    budget = Budget(max_submits)
    alongside = (RoundsAlongside(project_id, nice=rounds.startswith("nice"), skip_held=rounds.endswith("skip-held"))
                 if rounds else None)
    t0 = time.monotonic()
    deadline = t0 + seconds
    threads = [
        threading.Thread(target=annotate, kwargs={
            "browser": b, "annotator": p, "project_id": project_id, "flow": flow, "think": think,
            "deadline": deadline, "budget": budget, "seed": k, "stagger": start == "staggered"})
        for k, (b, p) in enumerate(zip(browsers, people, strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    elapsed = time.monotonic() - t0
    load_after = loadavg()
    beside = alongside.finish() if alongside else None
    server_times = server.server_times(offset)
    for browser in browsers:
        browser.conn.close()
    checks = verify(built=built, people=people, started_at=started_at)
    confirmed = sum(len(p.confirmed) for p in people)
    return {
        "flow": flow, "think_s": think, "start": start if think else "simultaneous", "checkpointed": checkpointed,
        "annotators": len(people),
        "seconds": round(elapsed, 1),
        "submits": sum(len(p.submit) for p in people), "confirmed": confirmed,
        "refused": sum(len(p.refused) for p in people), "client_errors": [e for p in people for e in p.errors][:10],
        "queue_empty_polls": sum(p.empty for p in people),
        "throughput_per_s": round(confirmed / elapsed, 1),
        "next_item_ms": percentiles([x for p in people for x in p.next_item]),
        "submit_ms": percentiles([x for p in people for x in p.submit]),
        "server_next_item_ms": percentiles(server_times.get("next_item", [])),
        "server_submit_ms": percentiles(server_times.get("submit", [])),
        "per_annotator_confirmed": sorted(len(p.confirmed) for p in people),
        "loadavg_before": load_before, "loadavg_after": load_after, **checks,
        **({"rounds_alongside": rounds, **beside} if beside else {}),
    }


def verify(*, built: dict, people: list[Annotator], started_at) -> dict:
    """Double claims, over-reviewed items and lost reviews, from the client's records and the database."""
    from django.db import connection

    from annotation.models import Item, Review, Status

    spans: dict[int, list[tuple[float, float, int]]] = {}
    for person in people:
        for item_id, start, end in person.held:
            spans.setdefault(item_id, []).append((start, end, person.user_id))
    at_once, to_two = 0, 0
    for item_spans in spans.values():
        item_spans.sort()
        if len({user for _, _, user in item_spans}) > 1:
            to_two += 1
        for (s1, e1, u1), (s2, e2, u2) in zip(item_spans, item_spans[1:]):
            if u1 != u2 and s2 < e1:
                at_once += 1
    project = built["project"]
    decisions = ("accept", "edit", "reject")
    with connection.cursor() as cursor:
        # Items with more deciders, or more decisions, than the reviews they need (the bench never undoes).
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE d.deciders > i.reviews_required),
                   count(*) FILTER (WHERE d.decisions > i.reviews_required)
            FROM (SELECT item_id, count(DISTINCT user_id) AS deciders, count(*) AS decisions FROM annotation_review
                  WHERE project_id = %s AND action IN ('accept', 'edit', 'reject') GROUP BY item_id) d
            JOIN annotation_item i ON i.id = d.item_id
            """,
            [project.pk],
        )
        two_deciders, over_reviewed = cursor.fetchone()
    logged = set(
        Review.objects.filter(project=project, created_at__gte=started_at, action__in=decisions)
        .values_list("item_id", "user_id", "action")
    )
    expected = {(item_id, p.user_id, action) for p in people for item_id, action, _ in p.confirmed}
    lost = expected - logged
    unconfirmed = logged - expected
    statuses = dict(Item.objects.filter(pk__in={i for i, _, _ in expected}).values_list("pk", "status"))
    wrong_state = 0
    for person in people:
        for item_id, action, second in person.confirmed:
            if second:
                ok = statuses.get(item_id) in (Status.ACCEPTED, Status.REJECTED)
            else:
                ok = statuses.get(item_id) == (Status.REJECTED if action == "reject" else Status.ACCEPTED)
            wrong_state += not ok
    return {"double_claims": at_once, "items_handed_to_two": to_two, "items_with_two_deciders": two_deciders,
            "over_reviewed_items": over_reviewed, "lost_reviews": len(lost),
            "reviews_without_confirmation": len(unconfirmed), "wrong_state": wrong_state,
            "ok": not (at_once or two_deciders or over_reviewed or lost or wrong_state)}


# --- The browse phase ------------------------------------------------------------------------------------------------

def run_browse(*, built: dict, server: Server, password: str, requests: int) -> dict:
    from annotation.dashboard import services as dashboard
    from annotation.models import Item, Status

    project = built["project"]
    t0 = time.perf_counter()
    dashboard.dashboard_compute(project_id=project.pk)
    compute_s = time.perf_counter() - t0
    items = Item.objects.filter(project=project).order_by("id").values_list("id", flat=True)
    low, high = items.first(), items.last()
    # A keyset page 90% of the way down (newest first): as deep as following "older" thousands of times.
    deep = low + (high - low) // 10
    waiting = Item.objects.filter(project=project, status=Status.NEEDS_REVIEW).order_by("id")
    deep_waiting = waiting.values_list("id", flat=True)[max(waiting.count() // 10, 0)]
    some_item = Item.objects.filter(project=project, status=Status.ACCEPTED).values_list("id", flat=True).first()
    base = f"/projects/{project.pk}"
    pages = {
        "browse_first": f"{base}/items/",
        "browse_deep": f"{base}/items/?after={deep}",
        "browse_deep_htmx": f"{base}/items/?after={deep}",
        "browse_status_first": f"{base}/items/?status=needs_review",
        "browse_status_deep": f"{base}/items/?status=needs_review&after={deep_waiting}",
        "item_detail": f"{base}/items/{some_item}/",
        "dashboard": f"{base}/dashboard/",
        "project_page": f"{base}/",
        "home": "/",
        "export_page": f"{base}/export/",
        "import_page": f"{base}/import/",
        "generation_jobs": f"{base}/generation/",
        "generation_job_oldest": f"{base}/generation/{built['jobs'][0].pk}/",
        "generation_job_newest": f"{base}/generation/{built['jobs'][-1].pk}/",
        "labels": f"{base}/labels/",
        "settings": f"{base}/settings/",
    }
    browser = Browser(server.port)
    browser.login(built["lead"].username, password)
    load_before = loadavg()
    timings = {}
    for name, path in pages.items():
        htmx = name.endswith("_htmx")
        status, body = browser.get(path, htmx=htmx)  # warm-up: connection, worker imports, caches
        if status != 200 or (name.startswith("browse") and body.count("<tr") < 20):
            timings[name] = {"error": f"status {status}" if status != 200 else "no items shown"}
            continue
        samples = []
        for _ in range(requests):
            t = time.perf_counter()
            status, _ = browser.get(path, htmx=htmx)
            samples.append(time.perf_counter() - t)
        timings[name] = {"median": round(statistics.median(samples) * 1000, 1),
                         "max": round(max(samples) * 1000, 1)}
    browser.conn.close()
    return {"dashboard_compute_s": round(compute_s, 1), "pages_ms": timings, "loadavg_before": load_before,
            "loadavg_after": loadavg()}


# --- Main ------------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1000000", help="project size, or several separated by commas")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    parser.add_argument("--max-submits", type=int, default=100_000, help="stop the load phase after this many")
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--flow", default="split",
                        help="split (claim and save timed apart) or htmx (one request per item), or both: split,htmx")
    parser.add_argument("--think", default="0",
                        help="mean seconds an annotator looks at an item before submitting (0: as fast as possible); "
                             "several separated by commas run one load phase each")
    parser.add_argument("--start", choices=["staggered", "simultaneous"], default="staggered",
                        help="with --think > 0: annotators start at random moments of their first look (staggered) "
                             "or all at the same instant, a burst of 16 requests (simultaneous)")
    parser.add_argument("--mode", choices=["load", "browse", "all"], default="all")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per page in the browse phase")
    parser.add_argument("--round", nargs="?", const="plain", default="", choices=["plain", "nice", "nice-skip-held"],
                        help="also run each load phase with scoring rounds of the project running (see the docstring)")
    parser.add_argument("--round-only", action="store_true", help="with --round: only the phases with rounds")
    parser.add_argument("--round-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--round-stop", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.round_child:
        return rounds_child(args.round_child, args.round_stop)
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("bench/load.py needs DATABASE_URL pointing at a PostgreSQL database of its own")
    call_command("migrate", verbosity=0)
    password = secrets.token_urlsafe(16)
    results = []
    server = Server(workers=args.workers, threads=args.threads)
    try:
        for n in [int(x) for x in args.items.split(",")]:
            print(f"building {n:,} items ...", flush=True)
            built = build(n, args.annotators, password)
            result = {"bench": "load", "database": connection.vendor, "items": n, "reviews_before": built["reviews"],
                      "copy_s": built["copy_s"], "build_s": built["build_s"],
                      "checkpointed": built["checkpointed"], "workers": args.workers,
                      "threads": args.threads, "cpus": os.cpu_count()}
            try:
                print(f"built in {built['build_s']} s (COPY {built['copy_s']} s)", flush=True)
                if args.mode in ("browse", "all"):
                    result["browse"] = run_browse(built=built, server=server, password=password,
                                                  requests=args.requests)
                    print(json.dumps(result["browse"]), flush=True)
                if args.mode in ("load", "all"):
                    result["load"] = []
                    for flow in args.flow.split(","):
                        for think in [float(x) for x in args.think.split(",")]:
                            variants = [args.round] if args.round_only else ["", args.round] if args.round else [""]
                            for rounds in variants:
                                phase = run_load(built=built, server=server, password=password,
                                                 seconds=args.seconds, max_submits=args.max_submits, flow=flow,
                                                 think=think, start=args.start, rounds=rounds)
                                print(json.dumps(phase), flush=True)
                                result["load"].append(phase)
            finally:
                project_remove(built["project"], built["users"])
            results.append(result)
    finally:
        server.stop()
    ok = all(phase["ok"] for r in results for phase in r.get("load", [])) and not any(
        "error" in page for r in results for page in r.get("browse", {}).get("pages_ms", {}).values())
    print(json.dumps({"bench": "load", "ok": ok, "runs": results}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
