"""Selection features: the embedding cache (a text is embedded once per model)."""
import threading

import numpy as np
import pytest

from annotation.selection import features
from annotation.selection.features import EmbeddingCache, embedding_cache, model_identity


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
    assert first.shape == (3, 8)
    assert model_identity(folder) == identity  # loading the model does not change the folder

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every text is cached")

    monkeypatch.setattr(features, "encode_texts", no_model)
    assert np.array_equal(features.featurize(texts), first)
