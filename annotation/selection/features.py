"""Text features for the selection model: TF-IDF word and character n-grams, and sentence embeddings beside them.

TF-IDF needs no weights, is fast on 100k texts and is always there. An operator who has a sentence-transformers model on
disk can point ``SELECTION_EMBEDDING_MODEL_PATH`` at it: its embeddings then come as a second part of ``Features`` (a
third committee member reads them; see ``scoring``); nothing is ever downloaded. Each text is embedded once per model:
vectors are kept in an ``EmbeddingCache`` under ``VAR_DIR/embedding-cache``.
"""
import hashlib
import importlib.util
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer

logger = logging.getLogger(__name__)

# Caps keep the vocabulary (and so memory and fit time) bounded on large projects; at 100k texts the most frequent
# n-grams carry nearly all the signal a linear model uses.
MAX_WORD_FEATURES = 200_000
MAX_CHAR_FEATURES = 150_000
# Character n-gram analysis costs ~5x the word analysis (pure Python per character); above this many texts the round
# would blow its time budget, and with that much data word n-grams alone lose little.
CHAR_NGRAMS_UP_TO = 30_000

# Part of every cache file's identity: bump it when what the cache stores changes meaning.
EMBEDDING_CACHE_FORMAT = 1
# Per model (1.5 GB of float32 vectors at 384 dimensions): the size of the largest project rounds are measured at
# (bench/RESULTS.md), so a project's own texts are not evicted while it is worked on.
MAX_CACHED_VECTORS = 1_000_000
# SQLite's limit on parameters per statement is 32,766 (999 before 3.32); stay below the old one.
SQL_CHUNK = 900
DAY = 86_400


class FeaturizerUnavailable(Exception):
    """The configured featurizer cannot be loaded; the message says what to install or configure."""


@dataclass(frozen=True)
class Features:
    """The selection model's input rows: TF-IDF n-grams, and sentence embeddings beside them when configured."""

    ngrams: sparse.csr_matrix
    embeddings: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        width = self.ngrams.shape[1] + (0 if self.embeddings is None else self.embeddings.shape[1])
        return self.ngrams.shape[0], width

    def __getitem__(self, rows) -> "Features":
        return Features(self.ngrams[rows], None if self.embeddings is None else self.embeddings[rows])


# Columns of the hashing alternative (``SELECTION_FEATURES=hashing``) per kind of n-gram.
HASHED_WORD_FEATURES = 2 ** 20
HASHED_CHAR_FEATURES = 2 ** 19
FEATURE_KINDS = ("vocabulary", "hashing")


def tfidf_features(texts: list[str]) -> sparse.csr_matrix:
    """Word 1-2-grams and character 2-5-grams (within word boundaries), sublinear TF, L2-normalised, side by side.

    Projects larger than ``CHAR_NGRAMS_UP_TO`` texts get word n-grams only.
    """
    return Featurizer(kind="vocabulary").fit_transform(texts)


class Featurizer:
    """TF-IDF n-grams fitted on one set of texts (a round's training set) and applied to any other (its chunks).

    ``vocabulary`` (the default) learns the n-grams of the texts it is fitted on, capped at the most frequent ones;
    ``hashing`` hashes every n-gram into a fixed number of columns (nothing to learn but the IDF weights), so n-grams
    that only the chunks contain still count. bench/RESULTS.md ("Chunked rounds") measures which routes better.
    Character n-grams join the words when the fitted set has at most ``CHAR_NGRAMS_UP_TO`` texts. Picklable, and small
    once fitted: the vectorizers' ``stop_words_`` (every n-gram cut, which can be millions) are dropped.
    """

    def __init__(self, kind: str = "vocabulary"):
        if kind not in FEATURE_KINDS:
            raise ValueError(f"SELECTION_FEATURES must be one of {', '.join(FEATURE_KINDS)}, not {kind!r}")
        self.kind = kind
        self.parts: list = []

    def fit_transform(self, texts: list[str]) -> sparse.csr_matrix:
        min_df = 2 if len(texts) >= 200 else 1
        chars = len(texts) <= CHAR_NGRAMS_UP_TO
        if self.kind == "hashing":
            self.parts = [_Hashed(ngram_range=(1, 2), n_features=HASHED_WORD_FEATURES)]
            if chars:
                self.parts.append(_Hashed(analyzer="char_wb", ngram_range=(2, 5), n_features=HASHED_CHAR_FEATURES))
        else:
            self.parts = [TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True,
                                          max_features=MAX_WORD_FEATURES, dtype=np.float32)]
            if chars:
                self.parts.append(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df,
                                                  sublinear_tf=True, max_features=MAX_CHAR_FEATURES,
                                                  dtype=np.float32))
        matrices = [part.fit_transform(texts) for part in self.parts]
        for part in self.parts:
            if hasattr(part, "stop_words_"):
                del part.stop_words_
        return _joined(matrices)

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        return _joined([part.transform(texts) for part in self.parts])


def _joined(matrices: list) -> sparse.csr_matrix:
    return matrices[0].tocsr() if len(matrices) == 1 else sparse.hstack(matrices, format="csr")


class _Hashed:
    """Hashed n-gram counts with sublinear TF-IDF weights learned from the texts it is fitted on, L2-normalised."""

    def __init__(self, **hashing):
        self.hasher = HashingVectorizer(alternate_sign=False, norm=None, dtype=np.float32, **hashing)
        self.idf = TfidfTransformer(sublinear_tf=True)

    def fit_transform(self, texts: list[str]) -> sparse.csr_matrix:
        return self.idf.fit_transform(self.hasher.transform(texts)).astype(np.float32)

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        return self.idf.transform(self.hasher.transform(texts)).astype(np.float32)


def embedding_features(texts: list[str], model_path: str) -> np.ndarray:
    """Sentence embeddings from a local sentence-transformers model folder, L2-normalised, float32."""
    folder = Path(model_path)
    if not folder.is_dir():
        raise FeaturizerUnavailable(f"SELECTION_EMBEDDING_MODEL_PATH={model_path} is not a folder with a model.")
    # Checked even when every text is cached, so a broken install shows at once and not at the first new text.
    if importlib.util.find_spec("sentence_transformers") is None:
        raise FeaturizerUnavailable(
            "SELECTION_EMBEDDING_MODEL_PATH is set but the sentence-transformers package is not installed; install "
            "it (pip install sentence-transformers) or unset the variable to use TF-IDF features alone."
        )
    return embedding_cache(folder).vectors(texts, encode=lambda missing: encode_texts(folder, missing))


def encode_texts(folder: Path, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 sentence embeddings of ``texts`` by the model in ``folder`` (on the CPU, offline)."""
    from sentence_transformers import SentenceTransformer

    # local_files_only: a path that is not a complete model must fail here, not fetch anything.
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def embedding_cache(folder: Path) -> "EmbeddingCache":
    """The cache of the model in ``folder``: one SQLite file per model identity under ``VAR_DIR/embedding-cache``."""
    return EmbeddingCache(Path(settings.VAR_DIR) / "embedding-cache" / f"{model_identity(folder)}.sqlite3")


def model_identity(folder: Path) -> str:
    """A hash of the model folder's resolved path and of each file's relative path, size and modification time.

    A model replaced in place gets a new identity, so vectors of the old one are never served for it. Hidden files
    and folders are left out (tools put lock files and caches there).
    """
    folder = folder.resolve()
    digest = hashlib.sha256(f"{EMBEDDING_CACHE_FORMAT}\0{folder}".encode())
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            stat = path.stat()
            digest.update(f"\0{relative}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


class EmbeddingCache:
    """One model's vectors in a SQLite file, keyed by the SHA-256 of the text.

    Safe for concurrent workers: each write is one transaction (SQLite's file locks serialise writers; a reader never
    sees half a write). Bounded: above ``max_vectors`` rows the least recently used go, "used" counted in days so that
    a round writes only for entries it has not touched today. A cache that cannot be read or written (corrupt file,
    full disk) is skipped with a warning: the texts are embedded again, the round does not fail.
    """

    def __init__(self, path: Path, *, max_vectors: int = MAX_CACHED_VECTORS):
        self.path = path
        self.max_vectors = max_vectors

    def vectors(self, texts: list[str], *, encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """A (len(texts), d) float32 array; ``encode`` is called once, with the distinct texts the cache lacks."""
        keys = [hashlib.sha256(text.encode("utf-8")).digest() for text in texts]
        first = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        found = self._read(list(first))
        missing = [key for key in first if key not in found]
        if missing:
            fresh = np.asarray(encode([texts[first[key]] for key in missing]), dtype=np.float32)
            fresh = {key: vector.tobytes() for key, vector in zip(missing, fresh)}
            self._write(fresh)
            found.update(fresh)
        out = np.empty((len(keys), len(next(iter(found.values()), b"")) // 4), np.float32)
        for i, key in enumerate(keys):
            out[i] = np.frombuffer(found[key], dtype=np.float32)
        return out

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode with explicit transactions; the timeout waits out another worker's write.
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        # A plain rowid table: rows of a kilobyte or more are what SQLite advises against WITHOUT ROWID for.
        db.execute("CREATE TABLE IF NOT EXISTS vectors "
                   "(key BLOB NOT NULL UNIQUE, vector BLOB NOT NULL, used INTEGER NOT NULL)")
        db.execute("CREATE INDEX IF NOT EXISTS vectors_used ON vectors (used)")
        return db

    def _read(self, keys: list[bytes]) -> dict[bytes, bytes]:
        today = int(time.time() // DAY)
        found, stale = {}, []
        try:
            db = self._connect()
            try:
                for start in range(0, len(keys), SQL_CHUNK):
                    chunk = keys[start:start + SQL_CHUNK]
                    rows = db.execute(f"SELECT key, vector, used FROM vectors WHERE key IN ({_marks(chunk)})", chunk)
                    for key, vector, used in rows:
                        found[key] = vector
                        if used < today:
                            stale.append(key)
                if stale:
                    db.execute("BEGIN IMMEDIATE")
                    for start in range(0, len(stale), SQL_CHUNK):
                        chunk = stale[start:start + SQL_CHUNK]
                        db.execute(f"UPDATE vectors SET used = ? WHERE key IN ({_marks(chunk)})", [today, *chunk])
                    db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.Error as exc:
            logger.warning("embedding cache %s not read (%s); embedding every text", self.path, exc)
            return {}
        return found

    def _write(self, vectors: dict[bytes, bytes]) -> None:
        today = int(time.time() // DAY)
        try:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO vectors (key, vector, used) VALUES (?, ?, ?)",
                               ((key, vector, today) for key, vector in vectors.items()))
                excess = db.execute("SELECT count(*) FROM vectors").fetchone()[0] - self.max_vectors
                if excess > 0:
                    db.execute("DELETE FROM vectors WHERE key IN (SELECT key FROM vectors ORDER BY used LIMIT ?)",
                               (excess,))
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.Error as exc:
            logger.warning("embedding cache %s not written (%s)", self.path, exc)


def _marks(chunk: list) -> str:
    return ", ".join("?" * len(chunk))


def featurize(texts: list[str], featurizer: Featurizer | None = None, *, fit: bool = False) -> Features:
    """TF-IDF n-grams of ``texts``, with the configured model's embeddings beside them if there is one. Without a
    ``featurizer`` the n-grams are fitted on ``texts`` themselves; with one, it is fitted on them (``fit``: a chunked
    round's training set) or applies what it learned (a chunk). Embeddings are read per call, so a chunk reads only
    its own texts from the cache."""
    model_path = getattr(settings, "SELECTION_EMBEDDING_MODEL_PATH", "")
    embeddings = embedding_features(texts, model_path) if model_path else None
    if featurizer is None:
        ngrams = tfidf_features(texts)
    else:
        ngrams = featurizer.fit_transform(texts) if fit else featurizer.transform(texts)
    return Features(ngrams, embeddings)
