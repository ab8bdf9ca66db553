"""Selection features: the embedding cache (a text is embedded once per model) and embeddings beside TF-IDF."""
import threading

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from annotation import selection
from annotation.models import Item, ScoringRound, Status
from annotation.selection import features, scoring
from annotation.selection.features import EmbeddingCache, Features, embedding_cache, model_identity, tfidf_features
from tests.support.factories import make_item


class FakeEncoder:
    """Stands in for a sentence-transformers model: a vector made from the text's bytes; records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.array([[len(t), sum(t.encode()) % 97, 1.0] for t in texts], dtype=np.float32)


def a_model_folder(path, weights=b"weights"):
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_a_second_featurize_of_the_same_texts_does_not_call_the_model_again(tmp_path):
    cache, encode = EmbeddingCache(tmp_path / "model.sqlite3"), FakeEncoder()
    texts = ["a good film", "a bad plot", "fine"]
    first = cache.vectors(texts, encode=encode)
    second = cache.vectors(texts, encode=encode)
    assert encode.calls == [texts]
    assert first.dtype == np.float32 and np.array_equal(first, second)
    assert np.array_equal(first, encode(texts))


def test_only_a_changed_text_is_embedded_again(tmp_path):
    cache, encode = EmbeddingCache(tmp_path / "model.sqlite3"), FakeEncoder()
    cache.vectors(["a good film", "a bad plot"], encode=encode)
    vectors = cache.vectors(["a good film", "a bad plot!"], encode=encode)
    assert encode.calls[1] == ["a bad plot!"]
    assert np.array_equal(vectors[1], encode(["a bad plot!"])[0])


def test_repeated_texts_are_embedded_once(tmp_path):
    encode = FakeEncoder()
    vectors = EmbeddingCache(tmp_path / "model.sqlite3").vectors(["same", "other", "same"], encode=encode)
    assert encode.calls == [["same", "other"]]
    assert np.array_equal(vectors[0], vectors[2])


def test_a_different_model_folder_does_not_share_entries(tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    one, two = a_model_folder(tmp_path / "one"), a_model_folder(tmp_path / "two")
    encode = FakeEncoder()
    embedding_cache(one).vectors(["a good film"], encode=encode)
    embedding_cache(two).vectors(["a good film"], encode=encode)
    embedding_cache(one).vectors(["a good film"], encode=encode)
    assert len(encode.calls) == 2
    assert embedding_cache(one).path.parent == tmp_path / "var" / "embedding-cache"


def test_a_model_replaced_in_place_gets_a_new_identity(tmp_path):
    folder = a_model_folder(tmp_path / "model")
    before = model_identity(folder)
    (folder / ".lock").write_text("tools write here")
    assert model_identity(folder) == before
    (folder / "model.safetensors").write_bytes(b"other weights, other size")
    assert model_identity(folder) != before


def test_the_cache_drops_the_least_recently_used_vectors_above_its_bound(tmp_path, monkeypatch):
    cache, encode = EmbeddingCache(tmp_path / "model.sqlite3", max_vectors=3), FakeEncoder()

    def on_day(day):
        monkeypatch.setattr(features.time, "time", lambda: day * features.DAY + 5.0)

    on_day(1)
    cache.vectors(["a", "b"], encode=encode)
    on_day(2)
    cache.vectors(["c"], encode=encode)
    on_day(3)
    cache.vectors(["a"], encode=encode)  # a hit: "a" is now the most recently used
    cache.vectors(["d"], encode=encode)  # four entries: "b" (last used on day 1) goes
    assert encode.calls == [["a", "b"], ["c"], ["d"]]
    cache.vectors(["a", "c", "d"], encode=encode)
    assert len(encode.calls) == 3
    cache.vectors(["b"], encode=encode)
    assert encode.calls[-1] == ["b"]


def test_an_unreadable_cache_file_falls_back_to_embedding(tmp_path):
    path = tmp_path / "model.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    encode = FakeEncoder()
    vectors = EmbeddingCache(path).vectors(["a good film", "a bad plot"], encode=encode)
    assert encode.calls == [["a good film", "a bad plot"]]
    assert vectors.shape == (2, 3)


def test_concurrent_workers_share_one_cache_file(tmp_path):
    path = tmp_path / "model.sqlite3"
    texts = [f"text number {i}" for i in range(300)]
    errors = []

    def worker(part):
        try:
            EmbeddingCache(path).vectors(part, encode=FakeEncoder())
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(texts[i * 50:i * 50 + 200],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    encode = FakeEncoder()
    vectors = EmbeddingCache(path).vectors(texts[:250], encode=encode)
    assert errors == [] and encode.calls == []
    assert np.array_equal(vectors, encode(texts[:250]))


def test_the_embedding_member_scores_what_the_ngrams_cannot_see():
    # The n-grams are noise; the embeddings carry the class. With them beside the n-grams, the committee finds the
    # LLM's wrong labels; on the n-grams alone it cannot.
    rng = np.random.default_rng(0)
    n = 120
    gold = np.array(["positive", "negative"] * (n // 2))
    texts = [f"token{rng.integers(1000)} token{rng.integers(1000)} item {i}" for i in range(n)]
    signal = np.where(gold == "positive", 1.0, -1.0)[:, None] * np.array([[0.6, 0.0]])
    embeddings = (signal + rng.normal(0, 0.15, (n, 2))).astype(np.float32)
    wrong = np.arange(n) % 10 == 0
    llm = [("negative" if g == "positive" else "positive") if w else g for g, w in zip(gold, wrong)]
    ngrams = tfidf_features(texts)
    with_embeddings = scoring.score(Features(ngrams, embeddings), llm=llm, human=[None] * n)
    without = scoring.score(Features(ngrams), llm=llm, human=[None] * n)
    assert roc_auc_score(wrong, with_embeddings.ambiguity) > 0.85
    assert roc_auc_score(wrong, without.ambiguity) < 0.65


def test_features_select_rows_of_both_parts():
    ngrams = tfidf_features(["a good film", "a bad plot", "fine acting"])
    part = Features(ngrams, np.arange(6, dtype=np.float32).reshape(3, 2))[np.array([2, 0])]
    assert part.shape == (2, ngrams.shape[1] + 2)
    assert part.embeddings.tolist() == [[4, 5], [0, 1]]
    assert (part.ngrams != ngrams[[2, 0]]).nnz == 0


def tiny_sentence_transformer(folder):
    """A one-layer BERT with random weights and a ten-word vocabulary, saved as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "film", "plot"]
    raw = folder / "raw"
    raw.mkdir(parents=True)
    (raw / "vocab.txt").write_text("\n".join(words) + "\n")
    config = BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32)
    BertModel(config).save_pretrained(raw)
    BertTokenizerFast(vocab_file=str(raw / "vocab.txt")).save_pretrained(raw)
    model = SentenceTransformer(modules=[models.Transformer(str(raw)), models.Pooling(8)], device="cpu")
    model.save(str(folder / "model"))
    return folder / "model"


def test_a_local_sentence_transformers_model_is_loaded_once_per_new_text(tmp_path, settings, monkeypatch):
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is optional and not installed here")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_sentence_transformer(tmp_path)
    identity = model_identity(folder)
    settings.VAR_DIR = tmp_path / "var"
    settings.SELECTION_EMBEDDING_MODEL_PATH = str(folder)
    texts = ["a good film", "a bad plot", "good plot"]
    first = features.featurize(texts)
    assert first.embeddings.shape == (3, 8)
    assert np.allclose(np.linalg.norm(first.embeddings, axis=1), 1.0, atol=1e-5)
    assert model_identity(folder) == identity  # loading the model does not change the folder

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every text is cached")

    monkeypatch.setattr(features, "encode_texts", no_model)
    assert np.array_equal(features.featurize(texts).embeddings, first.embeddings)


def test_a_round_with_an_embedding_model_scores_on_both_parts(project, settings, monkeypatch, tmp_path):
    settings.SELECTION_EMBEDDING_MODEL_PATH = str(tmp_path)
    seen = []

    def fake_embeddings(texts, model_path):
        seen.append(model_path)
        return FakeEncoder()(texts)

    monkeypatch.setattr(features, "embedding_features", fake_embeddings)
    real_score, given = scoring.score, []

    def score(X, **kwargs):
        given.append(X)
        return real_score(X, **kwargs)

    monkeypatch.setattr(scoring, "score", score)
    for i in range(30):
        make_item(project, f"a wonderful film {i}", status=Status.PROPOSED, proposed=["positive"])
        make_item(project, f"a dreadful bore {i}", status=Status.PROPOSED, proposed=["negative"])
    scoring_round = selection.selection_run_round(project=project)
    assert scoring_round.state == ScoringRound.State.DONE
    assert scoring_round.metrics["features"] == "tfidf+embedding"
    assert seen == [str(tmp_path)]
    assert given[0].embeddings.shape == (60, 3) and given[0].ngrams.shape[0] == 60
    assert Item.objects.filter(project=project, ambiguity__isnull=False).count() == 60
