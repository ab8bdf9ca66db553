"""One retrain + rescore + route round on a large project: wall time and peak memory. Prints one JSON line.

    DATABASE_URL=postgres://... python bench/selection_scale.py PATH [--items 100000] [--human 0.02]

PATH is a CSV with ``text`` and ``gold`` (or ``label``); its rows are repeated with a numbered suffix up to ``--items``
items, proposed by a "LLM" that is wrong on 10% of them; ``--human`` of them are accepted by a person. Setup (bulk
inserts) is not timed. Two rounds are timed: the first routes every item (one Review row per item that moves); the
second is the steady state of the learning loop (retrain, rescore all, move only what changed). Peak memory is the
process's resident set size sampled every 50 ms during each round. Without DATABASE_URL a throwaway SQLite file is used.
"""
import argparse
import csv
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import psutil
from common import setup_django


class PeakRss:
    def __init__(self):
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--human", type=float, default=0.02)
    args = parser.parse_args()
    setup_django(folder=tempfile.mkdtemp(prefix="ss-scale-"), migrate=True)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Item, Label, Status
    from annotation.projects import services
    from annotation.selection import selection_run_round

    with args.path.open(encoding="utf-8", newline="") as f:
        source = [(r["text"], r.get("gold") or r["label"]) for r in csv.DictReader(f)]
    labels = sorted({g for _, g in source})
    rng = random.Random(0)
    lead, _ = get_user_model().objects.get_or_create(username="scale-lead")
    project = services.project_create(name=f"scale {time.time():.0f}", lead=lead)
    Label.objects.bulk_create(Label(project=project, name=name, order=i) for i, name in enumerate(labels))
    items = []
    for i in range(args.items):
        text, gold = source[i % len(source)]
        llm = rng.choice(labels) if rng.random() < 0.1 else gold
        human = rng.random() < args.human
        items.append(Item(project=project, text=f"{text} ({i})", content_hash=f"{i:064d}", proposed_labels=[llm],
                          status=Status.ACCEPTED if human else Status.PROPOSED, final_labels=[gold] if human else []))
    Item.objects.bulk_create(items, batch_size=5000)
    del items

    timings = []
    for _ in range(2):
        with PeakRss() as rss:
            started = time.monotonic()
            scoring_round = selection_run_round(project=project, trigger="bench")
            seconds = time.monotonic() - started
        timings.append({"seconds": round(seconds, 1), "peak_rss_mb": round(rss.peak / 2**20),
                        "moved": {k: v for k, v in scoring_round.metrics["routing"].items() if v}})
    print(json.dumps({"database": connection.vendor, "items": args.items, "labels": len(labels),
                      "human_labels": scoring_round.human_labels, "first_round": timings[0],
                      "retrain_round": timings[1], "cpus": os.cpu_count(),
                      "load_average_1m": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
