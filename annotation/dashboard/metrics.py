"""Dataset-quality measures as pure functions over plain Python values: no database, no Django.

``annotation/dashboard/services.py`` gathers the inputs with bounded queries and caches the results; everything here can be
checked against a hand-computed example (tests/annotation/dashboard/test_metrics.py).
"""
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import permutations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import cohen_kappa_score

from synthstudio.lib.text import normalise_text

_TOKEN = re.compile(r"\w+", re.UNICODE)

# Two texts whose TF-IDF vectors have at least this cosine similarity count as near-duplicates.
NEAR_DUPLICATE_COSINE = 0.9
# Nearest-neighbour similarity compares every pair of the sample: the cost grows with its square.
MAX_SIMILARITY_SAMPLE = 2000
# Rows of the similarity matrix held in memory at once (block x sample floats).
_SIMILARITY_BLOCK = 500


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Distinct-n (Li et al., 2016): distinct n-grams / all n-grams over the corpus. None when there is no n-gram.

    It falls as a corpus grows, so compare groups on samples of the same size.
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = tokens(text)
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else None


def nearest_neighbour_similarities(texts: Sequence[str]) -> np.ndarray:
    """For each text, the TF-IDF cosine similarity of its nearest other text in ``texts``.

    The caller bounds ``texts`` (``MAX_SIMILARITY_SAMPLE``); the matrix is built a block of rows at a time.
    """
    if len(texts) < 2:
        return np.zeros(0)
    try:
        matrix = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b").fit_transform(texts)
    except ValueError:  # every text is empty or punctuation only: no vocabulary
        return np.zeros(len(texts))
    best = np.empty(len(texts))
    for start in range(0, len(texts), _SIMILARITY_BLOCK):
        block = (matrix[start:start + _SIMILARITY_BLOCK] @ matrix.T).toarray()
        for row in range(block.shape[0]):
            block[row, start + row] = -1.0  # a text is not its own neighbour
        best[start:start + block.shape[0]] = block.max(axis=1)
    return np.clip(best, 0.0, 1.0)


def exact_duplicate_rate(texts: Iterable[str]) -> float | None:
    """Share of texts that repeat an earlier one after normalisation (case, Unicode form, spacing)."""
    counts = Counter(normalise_text(t) for t in texts)
    total = sum(counts.values())
    return (total - len(counts)) / total if total else None


def diversity(texts: Sequence[str], *, near_threshold: float = NEAR_DUPLICATE_COSINE) -> dict:
    """Distinct-1/2, mean nearest-neighbour cosine similarity and duplicate rates of one (bounded) sample of texts.

    ``near_duplicate_rate`` counts texts whose nearest neighbour is at least ``near_threshold`` similar (exact
    duplicates included).
    """
    if len(texts) > MAX_SIMILARITY_SAMPLE:
        raise ValueError(f"diversity() takes at most {MAX_SIMILARITY_SAMPLE} texts; sample them first")
    nn = nearest_neighbour_similarities(texts)
    return {
        "n": len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "mean_nn_similarity": float(nn.mean()) if nn.size else None,
        "near_duplicate_rate": float((nn >= near_threshold).mean()) if nn.size else None,
        "exact_duplicate_rate": exact_duplicate_rate(texts),
    }


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters over the same units (scikit-learn). None when undefined (fewer than 2 units, or
    both raters always gave the one same answer, so chance agreement is 1)."""
    if len(a) != len(b):
        raise ValueError("both raters must rate the same units")
    if len(a) < 2 or len(set(a) | set(b)) < 2:
        return None
    value = cohen_kappa_score(list(a), list(b))
    return None if math.isnan(value) else float(value)


def krippendorff_alpha_nominal(units: Iterable[Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal data; each unit is the list of values its raters gave (any number, missing
    ones left out). Units with fewer than two values are not pairable and are ignored.

    alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c * n_k, with the coincidence matrix
    o_ck = sum over units of (ordered c-k pairs of values from different raters) / (m_u - 1).
    None when undefined (fewer than two pairable values, or a single value used throughout).
    """
    coincidences: dict[tuple[str, str], float] = defaultdict(float)
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        for c, k in permutations(unit, 2):
            coincidences[(c, k)] += 1.0 / (m - 1)
    n_c: dict[str, float] = defaultdict(float)
    for (c, _k), o in coincidences.items():
        n_c[c] += o
    n = sum(n_c.values())
    if n < 2:
        return None
    observed = sum(o for (c, k), o in coincidences.items() if c != k)
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def pairwise_kappa(ratings: Mapping[int, Mapping[int, str]], *, min_shared: int = 2) -> dict:
    """Cohen's kappa for every pair of raters who rated at least ``min_shared`` of the same units.

    ``ratings`` is unit -> rater -> value. Returns the pairs and their mean weighted by shared units (Cohen's kappa
    is defined for two raters; with more, the weighted mean over pairs is the usual summary).
    """
    shared: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
    for by_rater in ratings.values():
        raters = sorted(by_rater)
        for i, r1 in enumerate(raters):
            for r2 in raters[i + 1:]:
                shared[(r1, r2)].append((by_rater[r1], by_rater[r2]))
    pairs = []
    for (r1, r2), values in sorted(shared.items()):
        if len(values) < min_shared:
            continue
        kappa = cohen_kappa([v[0] for v in values], [v[1] for v in values])
        pairs.append({"raters": [r1, r2], "n": len(values), "kappa": kappa})
    defined = [p for p in pairs if p["kappa"] is not None]
    weight = sum(p["n"] for p in defined)
    mean = sum(p["kappa"] * p["n"] for p in defined) / weight if weight else None
    return {"pairs": pairs, "mean_kappa": mean}


NO_LABEL = "(none)"


def _single(labels: Sequence[str]) -> str:
    return labels[0] if labels else NO_LABEL


def confusion(pairs: Mapping[tuple[tuple[str, ...], tuple[str, ...]], int], labels: Sequence[str], *,
              multi_label: bool = False) -> dict:
    """LLM-vs-human agreement from counts of (LLM labels, human labels) -> items.

    Single-label: a matrix with rows = human label, columns = LLM label (``(none)`` for no proposal), and per label the
    LLM's precision and recall against the human. Multi-label: per label a 2x2 table (tp, fp, fn, tn).
    """
    names = list(labels)
    per_label: dict[str, dict] = {name: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for name in names}
    total = sum(pairs.values())
    if not multi_label:
        seen = {_single(llm) for llm, _ in pairs} | {_single(human) for _, human in pairs}
        axis = names + sorted(seen - set(names))
        index = {name: i for i, name in enumerate(axis)}
        matrix = [[0] * len(axis) for _ in axis]
        for (llm, human), count in pairs.items():
            matrix[index[_single(human)]][index[_single(llm)]] += count
        agree = sum(matrix[i][i] for i in range(len(axis)))
        for name in names:
            i = index[name]
            tp = matrix[i][i]
            per_label[name].update(tp=tp, fn=sum(matrix[i]) - tp, fp=sum(row[i] for row in matrix) - tp,
                                   tn=total - sum(matrix[i]) - sum(row[i] for row in matrix) + tp)
    else:
        axis, matrix = [], []
        agree = sum(count for (llm, human), count in pairs.items() if set(llm) == set(human))
        for (llm, human), count in pairs.items():
            for name in names:
                key = ("tp" if name in human else "fp") if name in llm else ("fn" if name in human else "tn")
                per_label[name][key] += count
    for cell in per_label.values():
        predicted, actual = cell["tp"] + cell["fp"], cell["tp"] + cell["fn"]
        cell["precision"] = cell["tp"] / predicted if predicted else None
        cell["recall"] = cell["tp"] / actual if actual else None
        p, r = cell["precision"], cell["recall"]
        if p is None or r is None:
            cell["f1"] = None
        else:
            cell["f1"] = 2 * p * r / (p + r) if p + r else 0.0
    return {"axis": axis, "matrix": matrix, "per_label": per_label, "n": total,
            "agreement": agree / total if total else None}


def coverage(counts: Mapping[tuple[str, str], int], labels: Sequence[str], values: Sequence[str], *,
             thin_share: float = 0.5) -> dict:
    """Label x attribute-value grid from counts of (label, value) -> items.

    A cell is thin when it holds less than ``thin_share`` of what an even spread would put there (total / cells);
    values met in the data but not declared are appended so nothing is hidden.
    """
    extra_labels = sorted({label for label, _ in counts} - set(labels))
    extra_values = sorted({value for _, value in counts} - set(values))
    rows, cols = list(labels) + extra_labels, list(values) + extra_values
    matrix = [[counts.get((r, c), 0) for c in cols] for r in rows]
    total = sum(map(sum, matrix))
    even = total / (len(rows) * len(cols)) if rows and cols else 0
    thin = [[even > 0 and cell < thin_share * even for cell in row] for row in matrix]
    return {"rows": rows, "cols": cols, "matrix": matrix, "thin": thin, "total": total,
            "thin_cells": sum(map(sum, thin))}


def review_rates(counts: Mapping[tuple[str, str], int]) -> dict:
    """Accept / edit / reject shares, overall and per label, from counts of (label, action) -> reviews."""
    per_label: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for (label, action), n in counts.items():
        per_label[label][action] += n
        overall[action] += n

    def shares(c: Counter) -> dict:
        n = c["accept"] + c["edit"] + c["reject"]
        return {"n": n, **{a: c[a] for a in ("accept", "edit", "reject")},
                **{f"{a}_rate": (c[a] / n if n else None) for a in ("accept", "edit", "reject")}}

    return {"overall": shares(overall), "per_label": {label: shares(c) for label, c in sorted(per_label.items())}}


def routing(status_counts: Mapping[str, int], *, human_reviews: int) -> dict:
    """Where the scored items went and the human reviews saved against reviewing every one of them.

    Scored items are those routed one way or the other (not proposed, not filtered). Reviewing everything would cost
    one review per scored item; auto-accepted items that no one audited are the reviews saved.
    """
    auto = status_counts.get("auto_accepted", 0)
    reviewed = status_counts.get("accepted", 0) + status_counts.get("rejected", 0)
    waiting = status_counts.get("needs_review", 0)
    scored = auto + reviewed + waiting
    return {
        "scored": scored,
        "auto_accepted": auto,
        "human": reviewed + waiting,
        "reviewed": reviewed,
        "waiting": waiting,
        "auto_share": auto / scored if scored else None,
        "human_share": (reviewed + waiting) / scored if scored else None,
        "human_reviews": human_reviews,
        "reviews_saved": auto,
        "saved_share": auto / scored if scored else None,
    }
