"""Text features for the selection model: TF-IDF word and character n-grams, or a local sentence-embedding model.

TF-IDF needs no weights, is fast on 100k texts and is the default. An operator who has a sentence-transformers model on
disk can point ``SELECTION_EMBEDDING_MODEL_PATH`` at it; nothing is ever downloaded.
"""
from pathlib import Path

import numpy as np
from django.conf import settings
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

# Caps keep the vocabulary (and so memory and fit time) bounded on large projects; at 100k texts the most frequent
# n-grams carry nearly all the signal a linear model uses.
MAX_WORD_FEATURES = 200_000
MAX_CHAR_FEATURES = 150_000
# Character n-gram analysis costs ~5x the word analysis (pure Python per character); above this many texts the round
# would blow its time budget, and with that much data word n-grams alone lose little.
CHAR_NGRAMS_UP_TO = 30_000


class FeaturizerUnavailable(Exception):
    """The configured featurizer cannot be loaded; the message says what to install or configure."""


def tfidf_features(texts: list[str]) -> sparse.csr_matrix:
    """Word 1-2-grams and character 2-5-grams (within word boundaries), sublinear TF, L2-normalised, side by side.

    Projects larger than ``CHAR_NGRAMS_UP_TO`` texts get word n-grams only.
    """
    min_df = 2 if len(texts) >= 200 else 1
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, max_features=MAX_WORD_FEATURES,
                            dtype=np.float32)
    if len(texts) > CHAR_NGRAMS_UP_TO:
        return words.fit_transform(texts).tocsr()
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df, sublinear_tf=True,
                            max_features=MAX_CHAR_FEATURES, dtype=np.float32)
    return sparse.hstack([words.fit_transform(texts), chars.fit_transform(texts)], format="csr")


def embedding_features(texts: list[str], model_path: str, *, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings from a local sentence-transformers model folder, L2-normalised, shifted to be >= 0.

    The shift keeps the features valid for the naive-Bayes member of the committee (it needs non-negative input); it
    does not change cosine geometry enough to matter for a linear model.
    """
    path = Path(model_path)
    if not path.is_dir():
        raise FeaturizerUnavailable(f"SELECTION_EMBEDDING_MODEL_PATH={model_path} is not a folder with a model.")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise FeaturizerUnavailable(
            "SELECTION_EMBEDDING_MODEL_PATH is set but the sentence-transformers package is not installed; install "
            "it (pip install sentence-transformers) or unset the variable to use TF-IDF features."
        ) from None
    # local_files_only: a path that is not a complete model must fail here, not fetch anything.
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32) + 1.0


def featurize(texts: list[str]):
    """The project's feature matrix, by the featurizer the settings choose."""
    model_path = getattr(settings, "SELECTION_EMBEDDING_MODEL_PATH", "")
    if model_path:
        return embedding_features(texts, model_path)
    return tfidf_features(texts)
