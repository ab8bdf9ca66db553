"""Generation jobs run in the test process: seed texts of two labels and a helper that creates a job and runs it."""
from annotation.models import Source, Status
from generation import services
from generation.models import JobMode
from tests.support.factories import make_item

TEXTS = {
    "positive": ["A wonderful film with a brilliant cast and a moving story.",
                 "I loved every minute; the music was superb and the ending delightful.",
                 "Great fun from start to finish, I would recommend it to anyone."],
    "negative": ["A boring, dull mess with the worst dialogue of the year.",
                 "I hated the plot and the acting was terrible throughout.",
                 "A disappointing waste of two hours; the pacing was awful."],
}


def seed(project, texts=TEXTS) -> None:
    """Accepted, imported items of each label in ``texts``: the exemplars a job's prompts show."""
    for label, examples in texts.items():
        for text in examples:
            make_item(project, text, status=Status.ACCEPTED, proposed=(), final_labels=[label], source=Source.IMPORTED)


def start(project, lead, *, mode=JobMode.LABEL_CONDITIONED, provider="openai", run=True, **options):
    """Create a job (not queued) and, with ``run``, run it here as a worker would; returns the job, refreshed."""
    options = {"count": 20, "samples_per_request": 5, "requests_per_batch": 2, "exemplars": 2,
               "temperature": 0.9, "max_concurrency": 4, **options}
    job = services.job_create(project=project, user=lead, mode=mode, provider=provider, options=options,
                              enqueue=False)
    if run:
        services.job_run(job_id=job.id, token="test-worker")
        job.refresh_from_db()
    return job
