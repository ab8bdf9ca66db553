"""Import and export speed and memory at scale, next to PostgreSQL's own COPY of the same rows.

    createdb -h 127.0.0.1 -U postgres ss_io_bench      # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ss_io_bench python bench/io.py --rows 1000000

Generates a CSV of synthetic rows (20% with a gold label, 50% with an LLM label and confidence, an extra column),
times the validation pass alone, then imports the file through the same job code as an upload (validation pass, one
write transaction, progress, ANALYZE), exports the project as CSV and JSONL to /dev/null, and runs
``COPY (SELECT <the columns the export reads> ...) TO STDOUT`` over the same rows for comparison (twice; the faster
run counts). The provenance export (one extra query per batch for the last reviews) is timed too.
Then the same exports as a lead downloads them: gunicorn with the production config (``synthstudio/gunicorn_conf.py``,
one worker, started as ``bench/load.py`` starts it, on a loopback port), a session logged in through the login form,
``GET /projects/<id>/export/download/`` with every status ticked (the COPY path), the body read in 1 MB reads and
thrown away; time to the last byte and the worker's peak RSS before and after. ``--http
N`` repeats each download N times (the fastest counts; 0 skips them).
Each phase runs in its own process so its peak RSS is its own. The bench makes its own user and project and deletes
them (and its file) at the end. The last line printed is one JSON object with every figure.
"""
import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import LABELS, REPO, peak_rss_mb, project_remove, setup_django
from load import HOST, Browser, Server

# Fewer words than the other benches' texts: the figures in RESULTS.md were measured on these.
WORDS = ("what how why who where when which film city river price number year company song war book actor disease "
         "country team language animal colour planet law school food music game car bank island bridge").split()


def generate(path: Path, rows: int, seed: int = 7) -> None:
    import csv

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "gold", "llm", "confidence", "origin"])
        for i in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))) + f" #{i}?"
            r = rng.random()
            gold = rng.choice(LABELS) if r < 0.2 else ""
            llm, conf = (rng.choice(LABELS), f"{rng.random():.3f}") if 0.2 <= r < 0.7 else ("", "")
            w.writerow([text, gold, llm, conf, f"src-{i % 97}"])


# --- phases, each run in a child process -----------------------------------------------------------------------------

def phase_import(project_id: int, path: str) -> dict:
    """The whole job as an upload runs it (validate, write in one transaction, progress, ANALYZE), minus the queue."""
    from annotation.io import importing
    from annotation.models import Project

    project = Project.objects.get(pk=project_id)
    options = importing.ImportOptions(format="csv", label_column="gold", llm_label_column="llm",
                                      llm_confidence_column="confidence", duplicates="keep")
    job = importing.import_job_create(project=project, user=project.created_by, file_name="rows.csv",
                                      options=options, source_path=Path(path))
    t0 = time.perf_counter()
    job = importing.import_job_run(job_id=job.pk)
    seconds = time.perf_counter() - t0
    assert job.state == "done", job.errors[:3]
    return {"rows": job.rows_imported, "seconds": round(seconds, 2), "rows_per_s": round(job.rows_imported / seconds),
            "peak_rss_mb": round(peak_rss_mb())}


def phase_validate(project_id: int, path: str) -> dict:
    """The validation pass alone, to split the import's time between checking and writing."""
    from annotation.io import importing
    from annotation.models import Project

    options = importing.ImportOptions(format="csv", label_column="gold", llm_label_column="llm",
                                      llm_confidence_column="confidence", duplicates="keep")
    t0 = time.perf_counter()
    report = importing.import_validate(project=Project.objects.get(pk=project_id), path=Path(path), options=options)
    return {"rows": report.rows, "errors": report.n_errors, "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(peak_rss_mb())}


def phase_export(project_id: int, fmt: str, provenance: bool) -> dict:
    from annotation.io import exporting
    from annotation.models import Project

    project = Project.objects.get(pk=project_id)
    t0 = time.perf_counter()
    size = 0
    with open(os.devnull, "w", encoding="utf-8") as sink:
        for chunk in exporting.export_stream(project=project, fmt=fmt, filters=exporting.ExportFilters(),
                                             provenance=provenance):
            size += len(chunk)
            sink.write(chunk)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "chars": size, "peak_rss_mb": round(peak_rss_mb())}


def phase_copy(project_id: int) -> dict:
    from django.db import connection

    sql = ("COPY (SELECT id, text, final_labels, proposed_labels, status, source FROM annotation_item "
           f"WHERE project_id = {int(project_id)} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)")
    t0 = time.perf_counter()
    size = 0
    with open(os.devnull, "wb") as sink, connection.cursor() as cursor:
        with cursor.cursor.copy(sql) as copy:
            for block in copy:
                size += len(block)
                sink.write(block)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "bytes": size, "peak_rss_mb": round(peak_rss_mb())}


def _worker_pids(server: Server) -> list[int]:
    """gunicorn's worker processes: the children of its master."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def _peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def http_download(*, server: Server, browser: Browser, project_id: int, fmt: str) -> dict:
    """One export download over HTTP, streamed to nowhere: seconds to the last byte, and bytes."""
    import http.client
    import urllib.parse

    query = urllib.parse.urlencode([("format", fmt), ("include", "verified"),
                                    *(("status", s) for s in ("proposed", "needs_review", "auto_accepted", "filtered",
                                                              "accepted", "rejected"))])
    conn = http.client.HTTPConnection(HOST, server.port, timeout=600)
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
    t0 = time.perf_counter()
    conn.request("GET", f"/projects/{project_id}/export/download/?{query}", headers=headers)
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"download answered {response.status}")
    size = 0
    while block := response.read(1 << 20):
        size += len(block)
    seconds = time.perf_counter() - t0
    conn.close()
    return {"seconds": round(seconds, 2), "bytes": size}


def phase_http(project_id: int, username: str, password: str, repeat: int) -> dict:
    """The CSV and JSONL downloads through gunicorn (one worker of one thread, so its RSS is the download's)."""
    server = Server(workers=1, threads=1)
    try:
        browser = Browser(server.port)
        browser.login(username, password)
        browser.conn.close()
        worker = _worker_pids(server)[0]
        out = {"worker_rss_mb_before": _peak_rss_mb(worker)}
        for fmt in ("csv", "jsonl"):
            runs = [http_download(server=server, browser=browser, project_id=project_id, fmt=fmt)
                    for _ in range(repeat)]
            out[fmt] = min(runs, key=lambda r: r["seconds"])
            out[fmt]["all_seconds"] = [r["seconds"] for r in runs]
        out["worker_peak_rss_mb_after"] = _peak_rss_mb(worker)
        return out
    finally:
        server.stop()


def child(args) -> None:
    setup_django()
    if args.child == "import":
        out = phase_import(args.project, args.file)
    elif args.child == "validate":
        out = phase_validate(args.project, args.file)
    elif args.child == "copy":
        out = phase_copy(args.project)
    else:
        out = phase_export(args.project, args.child.split("-")[1], args.child.endswith("-prov"))
    print(json.dumps(out))


def run_child(name: str, project_id: int, file: str = "") -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--project", str(project_id), "--file", file]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"phase {name} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--http", type=int, default=2, help="downloads over HTTP per format (0: none)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--project", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from annotation.models import Label
    from annotation.projects import services

    if connection.vendor != "postgresql":
        raise SystemExit("bench/io.py compares with PostgreSQL's COPY: set DATABASE_URL to a PostgreSQL database")
    call_command("migrate", verbosity=0)
    password = secrets.token_urlsafe(16)
    user = get_user_model().objects.create_user(f"bench-io-{os.getpid()}", password=password)
    project = services.project_create(name=f"bench io {os.getpid()}", lead=user)
    Label.objects.bulk_create(Label(project=project, name=n, order=i) for i, n in enumerate(LABELS))
    tmp = Path(tempfile.mkdtemp(prefix="bench-io-"))
    path = tmp / "rows.csv"
    results = {"rows": args.rows, "database": "postgresql", "cpus": os.cpu_count()}
    try:
        t0 = time.perf_counter()
        generate(path, args.rows)
        results["file_mb"] = round(path.stat().st_size / 1e6, 1)
        print(f"generated {args.rows} rows ({results['file_mb']} MB) in {time.perf_counter() - t0:.1f}s", flush=True)
        for name in ("validate", "import"):
            results[name] = run_child(name, project.pk, str(path))
            print(name, results[name], flush=True)
        for name in ("copy", "export-csv", "export-jsonl", "copy", "export-csv-prov"):
            key = name if name not in results else f"{name}-again"
            results[key] = run_child(name, project.pk)
            print(key, results[key], flush=True)
        copy_s = min(results["copy"]["seconds"], results["copy-again"]["seconds"])
        results["export_csv_rows_per_s"] = round(args.rows / results["export-csv"]["seconds"])
        results["export_jsonl_rows_per_s"] = round(args.rows / results["export-jsonl"]["seconds"])
        results["csv_vs_copy"] = round(results["export-csv"]["seconds"] / copy_s, 2)
        results["jsonl_vs_copy"] = round(results["export-jsonl"]["seconds"] / copy_s, 2)
        if args.http:
            results["http"] = phase_http(project.pk, user.username, password, args.http)
            print("http", results["http"], flush=True)
            results["http_csv_vs_copy"] = round(results["http"]["csv"]["seconds"] / copy_s, 2)
            results["http_jsonl_vs_copy"] = round(results["http"]["jsonl"]["seconds"] / copy_s, 2)
    finally:
        path.unlink(missing_ok=True)
        tmp.rmdir()
        project_remove(project, [user])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
