"""Generation throughput, fault tolerance and prompt cost against the loopback LLM server.

    python bench/generation.py [--samples 2000] [--latency 0.2] [--concurrency 8] [--fault-rate 0.2]

Runs real generation jobs (services.job_run, the code a Celery worker runs) on a throwaway SQLite database (or
DATABASE_URL if set) against tests/support/llm_server.py started as a subprocess:

1. throughput: ``--samples`` samples, 5 per request, no faults; ideal time = requests / concurrency x latency;
2. faults: the same with ``--fault-rate`` random faults (429, 500, 503, truncated JSON, wrong schema, cut-off body):
   checks produced + filtered + failed = requested, no duplicate items, no crash;
3. prompt tokens per stored sample when asking for 1, 5 or 10 samples per request (smaller runs).

Prints a human summary, then one JSON line last.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import REPO, setup_django


def start_server(latency: float, fault_rate: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "support" / "llm_server.py"), "--port", "0", "--latency", str(latency),
         "--fault-rate", str(fault_rate), "--retry-after", "0.2", "--seed", "11"],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    return proc, line.rsplit(" ", 1)[-1].strip()


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def make_project(name: str):
    from django.contrib.auth import get_user_model

    from annotation.models import Item, Label, Source, Status
    from annotation.projects import services as annotation_services
    from synthstudio.lib.text import content_hash

    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = annotation_services.project_create(name=name, lead=user, description="Sentiment of short reviews.")
    for i, (label, words) in enumerate((("positive", ["good", "great"]), ("negative", ["bad", "awful"]))):
        Label.objects.create(project=project, name=label, label_words=words, order=i,
                             description=f"the writer found it {words[0]}")
    # Accepted seeds: the exemplars each prompt shows.
    Item.objects.bulk_create(Item(project=project, text=t, final_labels=[l], status=Status.ACCEPTED,
                                  source=Source.IMPORTED, content_hash=content_hash(t)) for t, l in (
        ("A great little film with a warm heart.", "positive"),
        ("Good food, friendly staff, we will be back.", "positive"),
        ("An awful, noisy hotel with rude staff.", "negative"),
        ("Bad sound, bad picture, bad support.", "negative"),
    ))
    return project, user


def run_job(base_url: str, *, samples: int, per_request: int, concurrency: int, name: str) -> dict:
    from django.conf import settings

    from annotation.models import Item
    from generation import services
    from generation.models import JobMode

    settings.OPENAI_BASE_URL = base_url
    settings.OPENAI_TIMEOUT = 5
    settings.OPENAI_MAX_RETRIES = 4
    project, user = make_project(name)
    job = services.job_create(project=project, user=user, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                              options={"count": samples, "samples_per_request": per_request,
                                       "requests_per_batch": concurrency * 2, "max_concurrency": concurrency,
                                       "exemplars": 2, "temperature": 0.9}, enqueue=False)
    started = time.perf_counter()
    crashed = ""
    try:
        services.job_run(job_id=job.id, token="bench")
    except Exception as exc:  # noqa: BLE001 - a crash is what this benchmark counts
        crashed = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    job.refresh_from_db()
    items = Item.objects.filter(generation_job_id=job.id)
    keys = list(items.values_list("idempotency_key", flat=True))
    proposed_hashes = list(items.filter(status="proposed").values_list("content_hash", flat=True))
    stored = job.produced + job.filtered
    return {
        "samples": samples, "per_request": per_request, "concurrency": concurrency, "status": job.status,
        "seconds": round(elapsed, 2), "requests": job.requests_made, "retries": job.retries,
        "produced": job.produced, "filtered": job.filtered, "failed": job.failed, "malformed": job.malformed,
        "invariant_ok": job.produced + job.filtered + job.failed == job.requested,
        "duplicate_keys": len(keys) - len(set(keys)),
        "duplicate_proposed_texts": len(proposed_hashes) - len(set(proposed_hashes)),
        "filtered_by_reason": job.filtered_by_reason, "failed_by_reason": job.failed_by_reason,
        "prompt_tokens_per_stored_sample": round(job.prompt_tokens / stored, 1) if stored else None,
        "crashed": crashed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--token-samples", type=int, default=200, help="samples per run of the prompt-token comparison")
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = "bench"
    setup_django(folder=tempfile.mkdtemp(prefix="bench-generation-"), migrate=True)

    server, url = start_server(args.latency, 0.0)
    try:
        clean = run_job(url, samples=args.samples, per_request=5, concurrency=args.concurrency, name="throughput")
        tokens = {k: run_job(url, samples=args.token_samples, per_request=k, concurrency=args.concurrency,
                             name=f"tokens-{k}")["prompt_tokens_per_stored_sample"] for k in (1, 5, 10)}
    finally:
        stop_server(server)
    ideal = clean["requests"] / args.concurrency * args.latency
    clean["ideal_seconds"] = round(ideal, 2)
    clean["throughput_ratio"] = round(ideal / clean["seconds"], 3)
    clean["samples_per_second"] = round(clean["produced"] / clean["seconds"], 1)

    server, url = start_server(args.latency, args.fault_rate)
    try:
        faulty = run_job(url, samples=args.samples, per_request=5, concurrency=args.concurrency, name="faults")
    finally:
        stop_server(server)

    print(f"throughput: {clean['produced']} stored of {args.samples} in {clean['seconds']} s "
          f"(ideal {clean['ideal_seconds']} s at concurrency {args.concurrency}, {args.latency} s per request): "
          f"ratio {clean['throughput_ratio']}")
    print(f"faults {args.fault_rate:.0%}: produced {faulty['produced']} + filtered {faulty['filtered']} + failed "
          f"{faulty['failed']} = {faulty['produced'] + faulty['filtered'] + faulty['failed']} (requested "
          f"{args.samples}); retries {faulty['retries']}, malformed {faulty['malformed']}, duplicate keys "
          f"{faulty['duplicate_keys']}, crash: {faulty['crashed'] or 'none'}")
    print(f"prompt tokens per stored sample by samples per request: {tokens}")
    print(json.dumps({"bench": "generation", "database": os.environ["DATABASE_URL"].split(":", 1)[0],
                      "throughput": clean, "faults": faulty, "prompt_tokens_per_stored_sample": tokens}))


if __name__ == "__main__":
    main()
