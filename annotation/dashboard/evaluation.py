"""Train on synthetic, test on real: a lead's gold test set scores classifiers trained on three views of the project.

(a) ``curated``: the dataset as it would be exported (accepted + auto-accepted items, final labels else proposed);
(b) ``llm``: the LLM's proposed labels alone, on every item that was not filtered;
(c) ``human``: items a person accepted, with the labels they gave.
Each is the same classifier as the selection model's (TF-IDF word + character n-grams, logistic regression), trained on
at most ``MAX_TRAIN`` items (a uniform sample beyond that) and scored on the gold set by accuracy and macro-F1.
Single-label projects only: the gold format has one label per row.
"""
import csv
import io
import json
import time

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import FeatureUnion, make_pipeline

from annotation.errors import ServiceError
from annotation.models import HUMAN_DECISIONS, EvaluationRun, Item, Label, Project, Review, Status
from annotation.selection.features import MAX_CHAR_FEATURES, MAX_WORD_FEATURES
from synthstudio.lib.sampling import sample_ids

MAX_GOLD_BYTES = 10 * 1024 * 1024
MAX_GOLD_ROWS = 50_000
MAX_TRAIN = 50_000
_FETCH_CHUNK = 2000

TRAINING_SETS = {
    "curated": "Curated dataset (accepted + auto-accepted)",
    "llm": "LLM labels alone",
    "human": "Human-reviewed items alone",
}


class GoldError(ServiceError):
    """A gold file that cannot be used, with the row and field at fault."""


def gold_parse(*, data: bytes, file_name: str, labels: list[str]) -> list[list[str]]:
    """Read a gold test set: CSV with a header holding ``text`` and ``label``, or JSONL objects with those keys."""
    if len(data) > MAX_GOLD_BYTES:
        raise GoldError(f"The gold file is larger than {MAX_GOLD_BYTES // (1024 * 1024)} MB.")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GoldError(f"The gold file is not UTF-8 (byte {exc.start}).") from None
    if file_name.lower().endswith(".jsonl"):
        records = _jsonl(content)
    elif file_name.lower().endswith(".csv"):
        records = _csv(content)
    else:
        raise GoldError("Upload a .csv or .jsonl file.")
    known = set(labels)
    rows = []
    for number, record in records:
        text, label = (str(record.get(key) or "").strip() for key in ("text", "label"))
        if not text:
            raise GoldError(f"Row {number}: 'text' is empty.")
        if label not in known:
            raise GoldError(f"Row {number}: 'label' is '{label[:50]}', which is not a label of this project "
                            f"({', '.join(labels)}).")
        rows.append([text, label])
        if len(rows) > MAX_GOLD_ROWS:
            raise GoldError(f"The gold file has more than {MAX_GOLD_ROWS} rows.")
    if len({label for _, label in rows}) < 2:
        raise GoldError("The gold set needs examples of at least two labels.")
    return rows


def _csv(content: str):
    reader = csv.DictReader(io.StringIO(content, newline=""))
    missing = {"text", "label"} - set(reader.fieldnames or [])
    if missing:
        raise GoldError(f"Row 1: the header has no {' or '.join(sorted(missing))} column.")
    for number, record in enumerate(reader, start=2):
        yield number, record


def _jsonl(content: str):
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldError(f"Row {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise GoldError(f"Row {number}: expected an object with 'text' and 'label'.")
        yield number, record


def evaluation_create(*, project: Project, user, file_name: str, data: bytes) -> EvaluationRun:
    """Validate the gold file, store the run and queue it."""
    from annotation.dashboard.tasks import evaluation_run as task  # the task module imports this one

    if project.multi_label:
        raise GoldError("Train-on-synthetic evaluation supports single-label projects only.")
    labels = list(Label.objects.filter(project=project).values_list("name", flat=True))
    gold = gold_parse(data=data, file_name=file_name, labels=labels)
    with transaction.atomic():
        run = EvaluationRun.objects.create(project=project, created_by=user, file_name=file_name[:255], gold=gold,
                                           gold_size=len(gold))
        task.delay_on_commit(run.id)
    return run


def training_set(*, project: Project, name: str) -> QuerySet[Item]:
    items = Item.objects.filter(project=project, archived_at__isnull=True)
    if name == "curated":
        return items.filter(status__in=(Status.ACCEPTED, Status.AUTO_ACCEPTED))
    if name == "llm":
        return items.exclude(status=Status.FILTERED).exclude(proposed_labels=[])
    if name == "human":
        decided = Review.objects.filter(item_id=OuterRef("pk"), user__isnull=False, action__in=HUMAN_DECISIONS)
        return items.filter(status=Status.ACCEPTED).filter(Exists(decided))
    raise ValueError(f"unknown training set {name!r}")


def _examples(queryset: QuerySet[Item], *, name: str, seed: int) -> tuple[list[str], list[str]]:
    ids = sample_ids(queryset, size=MAX_TRAIN, seed=seed)
    texts, labels = [], []
    for start in range(0, len(ids), _FETCH_CHUNK):
        rows = Item.objects.filter(pk__in=ids[start:start + _FETCH_CHUNK]).values_list(
            "text", "final_labels", "proposed_labels"
        )
        for text, final, proposed in rows:
            chosen = proposed if name == "llm" else (final or proposed)
            if chosen:
                texts.append(text)
                labels.append(chosen[0])
    return texts, labels


def classifier():
    """The selection model's text features and its logistic-regression member, as one pipeline that can score a
    held-out set (annotation/selection/features.py: tfidf_features fits and transforms in one call, so it cannot be
    reused for gold texts the model must not have seen)."""
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=MAX_WORD_FEATURES)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                  max_features=MAX_CHAR_FEATURES)),
    ])
    return make_pipeline(features, LogisticRegression(C=4.0, max_iter=1000))


def score(*, texts: list[str], labels: list[str], gold: list[list[str]]) -> dict:
    """Train on (texts, labels) and score on gold; skipped (with the reason) when there is nothing to learn from."""
    if len(set(labels)) < 2:
        return {"n_train": len(texts), "skipped": "needs examples of at least two labels"}
    started = time.monotonic()
    model = classifier().fit(texts, labels)
    truth = [label for _, label in gold]
    predicted = list(model.predict([text for text, _ in gold]))
    return {
        "n_train": len(texts),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", labels=sorted(set(truth)), zero_division=0)),
        "seconds": round(time.monotonic() - started, 2),
    }


def evaluation_run(*, run_id: int) -> str:
    """Run one queued evaluation; a second delivery finds it claimed and does nothing."""
    claimed = EvaluationRun.objects.filter(pk=run_id, state=EvaluationRun.State.QUEUED).update(
        state=EvaluationRun.State.RUNNING, started_at=timezone.now(), step="Reading training data"
    )
    if not claimed:
        return "already claimed"
    run = EvaluationRun.objects.select_related("project").get(pk=run_id)
    results = {}
    try:
        for done, name in enumerate(TRAINING_SETS):
            _progress(run_id, percent=int(100 * done / len(TRAINING_SETS)), step=f"Training on: {TRAINING_SETS[name]}")
            texts, labels = _examples(training_set(project=run.project, name=name), name=name, seed=run_id)
            results[name] = score(texts=texts, labels=labels, gold=run.gold)
            EvaluationRun.objects.filter(pk=run_id).update(results=results)
    except Exception as exc:  # recorded for the lead; the traceback goes to the worker log
        EvaluationRun.objects.filter(pk=run_id).update(
            state=EvaluationRun.State.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    EvaluationRun.objects.filter(pk=run_id).update(
        state=EvaluationRun.State.DONE, progress=100, step="", results=results, finished_at=timezone.now()
    )
    return "done"


def _progress(run_id: int, *, percent: int, step: str) -> None:
    EvaluationRun.objects.filter(pk=run_id).update(progress=percent, step=step)
