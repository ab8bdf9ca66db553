"""Import and export speed and memory at scale, next to PostgreSQL's own COPY of the same rows.

    createdb -h 127.0.0.1 -U postgres ss_io_bench      # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ss_io_bench python bench/io.py --rows 1000000

Generates a CSV of synthetic rows (20% with a gold label, 50% with an LLM label and confidence, an extra column),
times the validation pass alone, then imports the file through the same job code as an upload (validation pass, one
write transaction, progress, ANALYZE), exports the project as CSV and JSONL to /dev/null, and runs
``COPY (SELECT <the columns the export reads> ...) TO STDOUT`` over the same rows for comparison (twice; the faster
run counts). The provenance export (one extra query per batch for the last reviews) is timed too.
Each phase runs in its own process so its peak RSS is its own. The bench makes its own user and project and deletes
them (and its file) at the end. The last line printed is one JSON object with every figure.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import LABELS, REPO, peak_rss_mb, project_remove, setup_django

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
    user = get_user_model().objects.create_user(f"bench-io-{os.getpid()}")
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
    finally:
        path.unlink(missing_ok=True)
        tmp.rmdir()
        project_remove(project, [user])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
