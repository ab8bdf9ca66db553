"""The lead's first pages at 1M and 10M items of one project, over real HTTP: the project page (its overview), the
dashboard, the export page and the item browser's first page, p50 and p99 of ``--requests`` requests each.

    createdb -h 127.0.0.1 -U postgres ss_pages_bench      # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ss_pages_bench python bench/pages.py --items 1000000,10000000 \\
        --requests 30 --load-seconds 60 --keep

PostgreSQL only. For each size in ``--items`` the project is built as ``bench/load.py`` builds it (COPY, the same mix
of statuses, scores and past reviews, ``VACUUM ANALYZE``, a checkpoint) and served by gunicorn with the production
config, as there; the dashboard's snapshots are computed first, as the Celery task would. Each page is requested once
to warm up, then ``--requests`` times one after the other by a lead logged in through the login form; the times are
the client's (the whole request over loopback). With ``--load-seconds`` the first size then gets a load phase of
``bench/load.py`` (16 annotators as fast as the server answers, claiming and reviewing), after which
``manage.py item_counts_reconcile --check`` recounts the project's items: the drift of the trigger-kept counters
(0 expected). ``--keep`` leaves the last project in the database (deleting 10M items takes far longer than dropping
the database); every other project is deleted. ``--project ID`` times the pages of such a kept project again (after a
change to the code) instead of building one.

``--trigger-cost N`` measures only what the item counters' UPDATE trigger costs a scoring round: it builds an N-item
project, then times ``UPDATE ... SET ambiguity`` of all its rows in one statement with ``EXPLAIN ANALYZE`` (the
trigger's own time, and the statement's) inside a transaction that is rolled back, ``--repeat`` times with the
trigger and as often with it disabled, alternating. It runs no migration, so it can measure the triggers of an older
migration too (``manage.py migrate annotation 0017_calibration_index`` first). The last line printed is one JSON
object with every figure.
"""
import argparse
import io
import json
import os
import secrets
import statistics
import sys
import time

from common import project_remove, setup_django
from load import Browser, Server, build, checkpoint, loadavg, percentiles, run_load


def pages_time(*, built: dict, server: Server, password: str, requests: int) -> dict:
    """p50/p99 (ms) of each page, requested one at a time after one warm-up request."""
    from annotation.dashboard import services as dashboard

    project_id = built["project"].pk
    t0 = time.perf_counter()
    dashboard.dashboard_compute(project_id=project_id)
    compute_s = time.perf_counter() - t0
    base = f"/projects/{project_id}"
    pages = {"project_page": f"{base}/", "dashboard": f"{base}/dashboard/", "export_page": f"{base}/export/",
             "browse_first": f"{base}/items/"}
    profile = pages_profile(lead=built["lead"], pages=pages, requests=requests)
    browser = Browser(server.port)
    browser.login(built["lead"].username, password)
    checkpoint()
    before = loadavg()
    timings = {}
    for name, path in pages.items():
        status, body = browser.get(path)
        if status != 200 or (name == "browse_first" and body.count("<tr") < 20):
            timings[name] = {"error": f"status {status}" if status != 200 else "no items shown"}
            continue
        samples = []
        for _ in range(requests):
            t = time.perf_counter()
            status, _ = browser.get(path)
            samples.append(time.perf_counter() - t)
        timings[name] = percentiles(samples)
    browser.conn.close()
    return {"dashboard_compute_s": round(compute_s, 1), "pages_ms": timings, "in_process_ms": profile,
            "loadavg_before": before, "loadavg_after": loadavg()}


def pages_profile(*, lead, pages: dict[str, str], requests: int) -> dict:
    """Each page in this process through Django's test client, as a split of where its time goes that the machine's
    load moves less than the wall time: medians of the request's wall time, of this process's CPU time (Python: view,
    templates), and of the time of its SQL statements as the client saw them; and the number of statements."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="localhost")
    client.force_login(lead)
    out = {}
    for name, path in pages.items():
        client.get(path)
        wall, cpu, sql = [], [], []
        for _ in range(requests):
            with CaptureQueriesContext(connection) as ctx:
                w, c = time.perf_counter(), time.process_time()
                client.get(path)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - w)
            sql.append(sum(float(q["time"]) for q in ctx.captured_queries))
        out[name] = {key: round(statistics.median(values) * 1000, 1)
                     for key, values in (("wall_p50", wall), ("cpu_p50", cpu), ("sql_p50", sql))}
        out[name]["queries"] = len(ctx.captured_queries)
    return out


def reconcile(project_id: int) -> dict:
    """The reconciliation command on the project: its output and whether it found drift (``--check``)."""
    from django.core.management import call_command

    out = io.StringIO()
    t0 = time.perf_counter()
    try:
        call_command("item_counts_reconcile", "--project", str(project_id), "--check", stdout=out)
        drifted = False
    except SystemExit:
        drifted = True
    return {"seconds": round(time.perf_counter() - t0, 1), "drifted": drifted, "output": out.getvalue().strip()}


def kept_project(project_id: int, password: str) -> dict:
    """A project left by ``--keep``, its lead's password set to ``password``."""
    from annotation.models import Membership, Project, Role

    project = Project.objects.get(pk=project_id)
    lead = Membership.objects.filter(project=project, role=Role.LEAD).select_related("user").first().user
    lead.set_password(password)
    lead.save(update_fields=["password"])
    return {"project": project, "lead": lead}


def trigger_cost(*, items: int, repeat: int) -> dict:
    """The UPDATE trigger's time on an ``items``-row UPDATE of ``ambiguity``, with and without it (rolled back)."""
    from django.db import connection, transaction

    from annotation.models import Item

    password = secrets.token_urlsafe(16)
    built = build(items, 0, password)
    project_id = built["project"].pk
    table = connection.ops.quote_name(Item._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE %s "
                       "AND NOT tgisinternal", [Item._meta.db_table, "%itemcount_update"])
        (trigger,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM annotation_itemcount WHERE project_id = %s", [project_id])
        (counter_rows,) = cursor.fetchone()
    runs: dict[str, list[dict]] = {"with": [], "without": []}
    try:
        for k in range(2 * repeat):
            kind = "with" if k % 2 == 0 else "without"
            with transaction.atomic(), connection.cursor() as cursor:
                if kind == "without":
                    cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
                # Every row gets a new score, and the unscored ones (a fifth of those waiting, the proposed) get one.
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) UPDATE {table} SET ambiguity = random() "
                               "WHERE project_id = %s", [project_id])
                (plan,) = cursor.fetchone()[0]
                triggers = {t["Trigger Name"]: t["Time"] for t in plan.get("Triggers", [])}
                runs[kind].append({"statement_ms": round(plan["Execution Time"], 1),
                                   "trigger_ms": round(triggers.get(trigger, 0.0), 1)})
                transaction.set_rollback(True)
    finally:
        project_remove(built["project"], built["users"])

    def median(kind: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[kind]), 1)

    return {"bench": "pages-trigger-cost", "items": items, "trigger": trigger, "counter_rows_after_build": counter_rows,
            "trigger_ms_median": median("with", "trigger_ms"),
            "statement_ms_median_with": median("with", "statement_ms"),
            "statement_ms_median_without": median("without", "statement_ms"), "runs": runs, "loadavg": loadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1000000,10000000", help="project sizes, separated by commas")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--load-seconds", type=float, default=0.0,
                        help="a load phase of this length at the first size, then the reconciliation (0: none)")
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the last project in the database")
    parser.add_argument("--project", type=int, help="time the pages of this (kept) project instead of building one")
    parser.add_argument("--trigger-cost", type=int, default=0, metavar="N",
                        help="only measure the counters' UPDATE trigger on an N-item project (see the docstring)")
    parser.add_argument("--repeat", type=int, default=5, help="with --trigger-cost: runs with and without")
    args = parser.parse_args()
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("bench/pages.py needs DATABASE_URL pointing at a PostgreSQL database of its own")
    if args.trigger_cost:
        print(json.dumps(trigger_cost(items=args.trigger_cost, repeat=args.repeat)))
        return
    call_command("migrate", verbosity=0)
    password = secrets.token_urlsafe(16)
    sizes = [int(x) for x in args.items.split(",")]
    results = []
    server = Server(workers=args.workers, threads=args.threads)
    if args.project:
        try:
            built = kept_project(args.project, password)
            result = {"project": args.project, "items": built["project"].items.count(),
                      **pages_time(built=built, server=server, password=password, requests=args.requests)}
        finally:
            server.stop()
        print(json.dumps({"bench": "pages", "runs": [result]}))
        return
    try:
        for k, n in enumerate(sizes):
            print(f"building {n:,} items ...", flush=True)
            built = build(n, args.annotators, password)
            result = {"items": n, "build_s": built["build_s"], "copy_s": built["copy_s"]}
            print(f"built in {built['build_s']} s (COPY {built['copy_s']} s)", flush=True)
            try:
                result.update(pages_time(built=built, server=server, password=password, requests=args.requests))
                print(json.dumps(result), flush=True)
                if args.load_seconds and k == 0:
                    load = run_load(built=built, server=server, password=password, seconds=args.load_seconds,
                                    max_submits=1_000_000, flow="split", think=0.0)
                    result["load"] = {key: load[key] for key in (
                        "seconds", "confirmed", "throughput_per_s", "next_item_ms", "submit_ms", "ok")}
                    result["reconcile"] = reconcile(built["project"].pk)
                    print(json.dumps({"load": result["load"], "reconcile": result["reconcile"]}), flush=True)
            finally:
                if not (args.keep and k == len(sizes) - 1):
                    project_remove(built["project"], built["users"])
            results.append(result)
    finally:
        server.stop()
    ok = not any("error" in page for r in results for page in r["pages_ms"].values()) and all(
        r["load"]["ok"] and not r["reconcile"]["drifted"] for r in results if "load" in r)
    print(json.dumps({"bench": "pages", "ok": ok, "cpus": os.cpu_count(), "runs": results}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
