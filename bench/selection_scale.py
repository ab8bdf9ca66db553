"""Scoring rounds on a large project: wall time, peak memory per worker, scores written per second. One JSON line.

    DATABASE_URL=postgres://... python bench/selection_scale.py PATH [--items 1000000] [--workers 2] [--human 0.0]

PATH is a CSV with ``text`` and ``gold`` (or ``label``); its rows are repeated with a numbered suffix up to ``--items``
items (COPY on PostgreSQL), proposed by a "LLM" that is wrong on 10% of them; ``--human`` of them are accepted by a
person beforehand. Setup is not timed. Three rounds are timed, as a project lives them:

1. ``calibrate``: the first round scores every item and draws the calibration sample (nothing else moves);
2. ``route``: after the calibration sample is reviewed (with the gold labels, through ``items_change``, untimed), the
   round that routes the whole project: most items move, each with its Review row;
3. ``steady``: the next round, the learning loop's steady state (retrain, rescore all, move what changed).

``--prerouted`` skips the first two (a million-item project spends most of its "route" round writing a Review row
per move): the items are built as a routed project holds them, calibrated (189 calibration items accepted with the
gold label), LLM labels the gold agrees with auto-accepted, the others in review, with scores of an earlier round;
then two rounds are timed: ``first`` (every row gets this model's scores) and ``steady``.

``--workers 0`` runs each round in this process (``selection_run_round``; chunks one after the other when the project
is larger than SELECTION_TRAIN_SIZE). ``--workers N`` starts N Celery worker processes (solo pool, so each is one
process; on a Redis broker, ``--broker``) and sends the round as the app does (``annotation.selection_round``); the
round's chunks spread over the workers. Peak memory is each process's resident set size sampled every 50 ms.
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from common import REPO, copy_text, items_copy, project_remove, setup_django

QUEUE = "bench-scale"


class PeakRss:
    """The peak resident set size of each of ``pids`` (this process if none) while the block runs."""

    def __init__(self, pids: list[int] | None = None):
        self.processes = [psutil.Process(pid) for pid in (pids or [os.getpid()])]
        self.peaks = [p.memory_info().rss for p in self.processes]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.05):
            for k, process in enumerate(self.processes):
                try:
                    self.peaks[k] = max(self.peaks[k], process.memory_info().rss)
                except psutil.Error:
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mb(self) -> list[int]:
        return [round(peak / 2**20) for peak in self.peaks]


def start_workers(n: int, broker: str, folder: str) -> list[subprocess.Popen]:
    env = dict(os.environ, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker, SYNTHSTUDIO_VAR_DIR=folder)
    workers = []
    for k in range(n):
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "synthstudio", "worker", "-Q", QUEUE, "--pool", "solo",
             "-n", f"bench-scale-{k}@%h", "--without-gossip", "--without-mingle", "-l", "WARNING"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(Path(folder) / f"worker-{k}.log", "w")))
    return workers


def build(project, source: list[tuple[str, str]], labels: list[str], n: int, human: float,
          prerouted: bool = False) -> None:
    from django.db import connection

    from annotation.models import Item, Status

    rng = random.Random(0)

    def rows():
        for i in range(n):
            text, gold = source[i % len(source)]
            llm = rng.choice(labels) if rng.random() < 0.1 else gold
            accepted = rng.random() < human
            status, final, calibration = (Status.ACCEPTED if accepted else Status.PROPOSED), [], False
            if accepted:
                final = [gold]
            elif prerouted and i < 189 * 50 and i % 50 == 0:
                status, final, calibration = Status.ACCEPTED, [gold], True
            elif prerouted:
                status = Status.AUTO_ACCEPTED if llm == gold and rng.random() < 0.95 else Status.NEEDS_REVIEW
            yield (f"{text} ({i})", f"{i:064d}", [llm], status, final, {"gold": gold}, calibration,
                   1 if final else 0, 0.5 if prerouted else None, 1 if prerouted else None)

    columns = ("text", "content_hash", "proposed_labels", "status", "final_labels", "extra", "is_calibration",
               "review_count", "ambiguity", "scored_round")
    if connection.vendor == "postgresql":
        items_copy(project=project, columns=columns,
                   rows=("\t".join(copy_text(v) for v in row) for row in rows()))
    else:
        batch = []
        for row in rows():
            batch.append(Item(project=project, **dict(zip(columns, row))))
            if len(batch) == 5000:
                Item.objects.bulk_create(batch)
                batch = []
        Item.objects.bulk_create(batch)


def review_calibration(project, user) -> int:
    """The calibration sample reviewed with the gold labels, through the one writer of item changes."""
    from annotation.items.services import ItemChange, items_change
    from annotation.models import Item, ReviewAction, Status

    ids = list(Item.objects.filter(project=project, is_calibration=True, status=Status.NEEDS_REVIEW)
               .values_list("id", flat=True))
    items_change(project_id=project.pk, item_ids=ids, user=user, read=("extra",), decide=lambda item: ItemChange(
        action=ReviewAction.ACCEPT, to=Status.ACCEPTED, final_labels=[item.extra["gold"]]))
    return len(ids)


def run_round(project, workers: list[subprocess.Popen]) -> dict:
    from django.db.models import Max, Min

    from annotation.models import ScoringChunk, ScoringRound
    from annotation.selection import selection_run_round
    from annotation.selection.tasks import selection_round

    pids = [w.pid for w in workers] or None
    with PeakRss(pids) as rss:
        started = time.monotonic()
        if workers:
            before = ScoringRound.objects.filter(project=project).count()
            selection_round.apply_async((project.pk,), {"force": True}, queue=QUEUE)
            while True:
                found = ScoringRound.objects.filter(project=project).order_by("-id").first()
                if found is not None and ScoringRound.objects.filter(project=project).count() > before \
                        and found.state != ScoringRound.State.RUNNING:
                    scoring_round = found
                    break
                if any(w.poll() is not None for w in workers):
                    raise SystemExit("a worker exited; see its log")
                time.sleep(0.2)
        else:
            scoring_round = selection_run_round(project=project, trigger="bench")
        seconds = time.monotonic() - started
    if scoring_round.state != ScoringRound.State.DONE:
        raise SystemExit(f"round failed: {scoring_round.error}")
    chunk_rows = ScoringChunk.objects.filter(scoring_round=scoring_round)
    phases = {}
    span = chunk_rows.aggregate(first=Min("started_at"), last=Max("finished_at"))
    if span["first"] is not None:
        # Train: the claim to the first chunk's start (includes the fan-out); route: the last chunk to the round's end.
        phases = {"train_s": round((span["first"] - scoring_round.started_at).total_seconds(), 1),
                  "chunks_s": round((span["last"] - span["first"]).total_seconds(), 1),
                  "route_s": round((scoring_round.finished_at - span["last"]).total_seconds(), 1)}
    return {"seconds": round(seconds, 1), "peak_rss_mb": rss.mb(), "chunks": scoring_round.chunks,
            "chunk_attempts": sum(chunk_rows.values_list("attempts", flat=True)),
            "items_scored": scoring_round.items_scored, "training_size": scoring_round.training_size,
            "scores_per_s": round(scoring_round.items_scored / seconds),
            "round_duration_s": round(scoring_round.duration_s, 1), "phases": phases,
            "rows_written": scoring_round.metrics.get("rows_written"),
            "moved": {k: v for k, v in scoring_round.metrics["routing"].items() if v}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--human", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--prerouted", action="store_true")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="ss-scale-")
    if args.workers:
        os.environ["CELERY_BROKER_URL"] = os.environ["CELERY_RESULT_BACKEND"] = args.broker
        os.environ["CELERY_TASK_DEFAULT_QUEUE"] = QUEUE  # the round's chunks and routing go where the workers listen
    setup_django(folder=folder, migrate=True)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Label
    from annotation.projects import services

    with args.path.open(encoding="utf-8", newline="") as f:
        source = [(r["text"], r.get("gold") or r["label"]) for r in csv.DictReader(f)]
    labels = sorted({g for _, g in source})
    lead, _ = get_user_model().objects.get_or_create(username="scale-lead")
    project = services.project_create(name=f"scale {time.time():.0f}", lead=lead)
    Label.objects.bulk_create(Label(project=project, name=name, order=i) for i, name in enumerate(labels))
    build(project, source, labels, args.items, args.human, args.prerouted)
    from django.conf import settings

    workers = start_workers(args.workers, args.broker, folder) if args.workers else []
    try:
        if args.prerouted:
            timed = {"first": run_round(project, workers), "steady": run_round(project, workers)}
            reviewed = 189
        else:
            timed = {"calibrate": run_round(project, workers)}
            reviewed = review_calibration(project, lead)
            timed |= {"route": run_round(project, workers), "steady": run_round(project, workers)}
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait()
    print(json.dumps({"database": connection.vendor, "items": args.items, "labels": len(labels),
                      "workers": args.workers, "train_size": settings.SELECTION_TRAIN_SIZE,
                      "chunk_size": settings.SELECTION_CHUNK_SIZE, "features": settings.SELECTION_FEATURES,
                      "calibration_reviewed": reviewed, **timed,
                      "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1)}))
    project_remove(project, [lead])


if __name__ == "__main__":
    main()
