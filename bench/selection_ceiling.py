"""How far can a router built on these text features go, even with every gold label known? A ceiling for routing.

    python bench/selection_ceiling.py PATH [--embeddings MODEL_DIR] [--finetune MODEL_DIR --finetune-folds K]

PATH is a CSV with ``text``, ``gold`` and ``llm_label`` (empty = the LLM abstained), as for
``bench/annotation_efficiency.py``. No database, no app services: this measures the features, not the loop.

For each featurization a classifier is trained on the **gold** labels of every item (5-fold, out of fold), far more
and far better supervision than the learning loop ever has (it starts from the LLM's labels and gets a person's label
only for what it routed). Items are then reviewed abstentions first, then by the probability the classifier gives to
the LLM's label (lowest first), and the script reports the share of items reviewed before the curated labels (a
person's label where reviewed, else the LLM's) reach 95 / 98 / 99% accuracy, and the AUC of that ranking for the
LLM's errors.

"with error model" adds what the app's error model does (the LLM's label as a signal: GPT-3.5 errs more on one label),
fitted in-sample on every item's true error, so it is optimistic.

Featurizations: the app's TF-IDF (word + character n-grams) with its NB-LR; with ``--embeddings``, a local
sentence-transformers model's embeddings (logistic regression) alone and beside TF-IDF; with ``--finetune``, the same
model fine-tuned end to end on gold (mean pooling + a linear head, 2 epochs, AdamW 5e-5; needs torch and
transformers; only ``--finetune-folds`` of the 5 folds are trained, and all figures of that row are then measured on
those folds' held-out items only). The last line printed is one JSON object with every row.
"""
import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from annotation_efficiency import first_crossings  # (bench/, the script's own folder)
from common import setup_django
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

# The selection package lives in a Django app; settings are loaded, the database is never touched.
setup_django(folder=tempfile.mkdtemp(prefix="synthstudio-ceiling-"))

from annotation.selection.features import tfidf_features  # noqa: E402
from annotation.selection.scoring import NBLogisticRegression  # noqa: E402

FOLDS = 5


def route(p_llm: np.ndarray, has_llm: np.ndarray, wrong: np.ndarray, rows: np.ndarray, records: list[dict]) -> dict:
    """Review abstentions first, then lowest p_llm first; measured over ``rows`` (indices into ``records``)."""
    ambiguity = np.where(has_llm[rows], 1.0 - p_llm[rows], 2.0)
    order = np.argsort(-ambiguity, kind="stable")
    labelled = has_llm[rows]
    auc = roc_auc_score(wrong[rows][labelled], 1.0 - p_llm[rows][labelled])
    return {"auc": round(float(auc), 3), "reviews_to": first_crossings(order.tolist(), [records[i] for i in rows])}


def with_error_model(p_llm, llm_idx, has_llm, wrong, rows, k, records) -> dict:
    """The app's error-model signals (logit of p_llm, the LLM's label), fitted on every item's true error."""
    p = np.clip(p_llm, 1e-4, 1 - 1e-4)
    onehot = np.eye(k)[np.maximum(llm_idx, 0)]
    signals = np.column_stack([np.log(p / (1 - p)), onehot])
    fit = rows[has_llm[rows]]
    model = LogisticRegression(max_iter=2000).fit(signals[fit], wrong[fit])
    return route(1.0 - model.predict_proba(signals)[:, 1], has_llm, wrong, rows, records)


def out_of_fold(make, X, y, splits, k) -> np.ndarray:
    proba = np.zeros((len(y), k))
    for fit, held in splits:
        model = make().fit(X[fit], y[fit])
        proba[np.ix_(held, model.classes_)] = model.predict_proba(X[held])
    return proba


def finetune(texts, y, splits, model_dir: str, k: int, epochs: int = 2, batch: int = 32) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(model_dir, local_files_only=True)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, k)

        def forward(self, ids, mask):
            hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            return self.head((hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True))

    def batches(rows):
        for i in range(0, len(rows), batch):
            b = rows[i:i + batch]
            mask = enc["attention_mask"][b]
            width = int(mask.sum(1).max())
            yield b, enc["input_ids"][b][:, :width], mask[:, :width]

    proba = np.zeros((len(y), k))
    for number, (fit, held) in enumerate(splits):
        started = time.time()
        model = Classifier()
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
        steps = epochs * -(-len(fit) // batch)
        schedule = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, steps)
        model.train()
        for epoch in range(epochs):
            for b, ids, mask in batches(np.random.default_rng(epoch).permutation(fit)):
                loss = torch.nn.functional.cross_entropy(model(ids, mask), torch.tensor(y[b]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        model.eval()
        with torch.no_grad():
            for b, ids, mask in batches(held):
                proba[b] = torch.softmax(model(ids, mask), -1).numpy()
        print(f"  fine-tune fold {number}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return proba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--embeddings", help="a local sentence-transformers model folder")
    parser.add_argument("--finetune", help="a local transformers model folder to fine-tune on gold")
    parser.add_argument("--finetune-folds", type=int, default=FOLDS)
    args = parser.parse_args()

    with args.path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    names = sorted({r["gold"] for r in rows} | {r["llm_label"] for r in rows if r["llm_label"]})
    k = len(names)
    y = np.array([names.index(r["gold"]) for r in rows])
    llm_idx = np.array([names.index(r["llm_label"]) if r["llm_label"] else -1 for r in rows])
    has_llm = llm_idx >= 0
    wrong = llm_idx != y
    n = len(rows)
    every = np.arange(n)
    splits = list(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(np.zeros(n), y))

    results = {}

    def add(name: str, proba: np.ndarray, rows_measured: np.ndarray = every) -> None:
        p_llm = np.where(has_llm, proba[every, np.maximum(llm_idx, 0)], 0.0)
        accuracy = float((proba[rows_measured].argmax(1) == y[rows_measured]).mean())
        plain = route(p_llm, has_llm, wrong, rows_measured, rows)
        learned = with_error_model(p_llm, llm_idx, has_llm, wrong, rows_measured, k, rows)
        results[name] = {"items": int(len(rows_measured)), "gold_accuracy": round(accuracy, 3), "router": plain,
                         "with_error_model": learned}
        print(f"{name:34s} items {len(rows_measured):5d}  accuracy {accuracy:.3f}  "
              f"AUC {plain['auc']:.3f} -> {learned['auc']:.3f}  "
              f"to 95/98/99%: {plain['reviews_to']} | with error model {learned['reviews_to']}", flush=True)

    oracle = first_crossings(np.flatnonzero(wrong).tolist(), rows)
    print(f"{args.path.name}: {n} items, LLM accuracy {1 - wrong.mean():.3f}, oracle {oracle}")
    X = tfidf_features(texts)
    tfidf = out_of_fold(NBLogisticRegression, X, y, splits, k)
    add("tfidf (NB-LR)", tfidf)
    if args.embeddings:
        from annotation.selection.features import embedding_features

        E = embedding_features(texts, args.embeddings)
        add("embeddings (LR)", out_of_fold(lambda: LogisticRegression(C=4.0, max_iter=2000), E, y, splits, k))
        both = sparse.hstack([X, sparse.csr_matrix(E)], format="csr")
        add("tfidf + embeddings (LR)", out_of_fold(lambda: LogisticRegression(C=4.0, max_iter=2000), both, y,
                                                   splits, k))
    if args.finetune:
        chosen = splits[: args.finetune_folds]
        measured = np.sort(np.concatenate([held for _, held in chosen]))
        tuned = finetune(texts, y, chosen, args.finetune, k)
        add(f"fine-tuned transformer ({len(chosen)} folds)", tuned, measured)
        add(f"tfidf, same {len(chosen)} folds", tfidf, measured)
    print(json.dumps({"dataset": args.path.name, "n": n, "oracle": oracle, "rows": results}))


if __name__ == "__main__":
    main()
