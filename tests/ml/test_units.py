"""Code tests of the model's parts: TF-IDF persistence, linear heads, fusion, TrainConfig, the catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from prodtype.catalog import CatalogError, load_catalog
from prodtype.data.challenge import Dataset
from prodtype.ml.fusion import Fusion, expected_calibration_error, fit_fusion, stack_branches
from prodtype.ml.heads import MISSING_CLASS_SCORE, LinearHead, fit_lda, fit_logistic, fit_svm
from prodtype.ml.text import TfidfConfig, TfidfFeatures
from prodtype.ml.train import TrainConfig, fit_model

# -- TF-IDF persistence -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def texts(sample_dataset) -> list[str]:  # type: ignore[no-untyped-def]
    """400 real product texts, cut to 300 characters to keep the character n-grams quick."""
    return [t[:300] for t in sample_dataset.products["text"].tolist()[:400]]


def test_tfidf_save_load_round_trip_gives_identical_matrices(texts: list[str], tmp_path: Path) -> None:
    config = TfidfConfig(word_max_features=5000, char_max_features=20000)
    fitted = TfidfFeatures(config).fit(texts[:300])
    files = fitted.save(tmp_path)
    assert sorted(files) == ["tfidf.json", "tfidf.npz"]
    loaded = TfidfFeatures.load(tmp_path)
    assert loaded.config == config
    assert loaded.n_features == fitted.n_features
    for batch in (texts[:300], texts[300:], ["Piscine gonflable &amp; bâche <br> hiver", "mot_inconnu_xyz"]):
        before, after = fitted.transform(batch), loaded.transform(batch)
        assert before.shape == after.shape
        assert before.dtype == after.dtype
        assert (before != after).nnz == 0


def test_tfidf_load_refuses_vocabulary_and_weights_of_different_lengths(
    texts: list[str], tmp_path: Path
) -> None:
    TfidfFeatures(TfidfConfig(word_max_features=100, char_max_features=100)).fit(texts[:50]).save(tmp_path)
    with np.load(tmp_path / "tfidf.npz") as npz:
        arrays = dict(npz)
    np.savez(tmp_path / "tfidf.npz", word_idf=arrays["word_idf"][:-1], char_idf=arrays["char_idf"])
    with pytest.raises(ValueError, match="word vocabulary has 100 terms but 99 weights"):
        TfidfFeatures.load(tmp_path)


def test_tfidf_transform_before_fit_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        TfidfFeatures().transform(["x"])


@pytest.mark.parametrize("field", ["word_ngrams", "char_ngrams"])
@pytest.mark.parametrize("bad", [(0, 1), (3, 2)])
def test_tfidf_config_rejects_bad_ngram_ranges(field: str, bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=f"TfidfConfig.{field}="):
        TfidfConfig(**{field: bad})


def test_tfidf_config_rejects_an_unknown_character_analyzer() -> None:
    with pytest.raises(
        ValueError, match=r"TfidfConfig.char_analyzer='word': expected one of \('char', 'char_wb'\)"
    ):
        TfidfConfig(char_analyzer="word")


def test_character_ngrams_stay_within_words_by_default_and_cross_spaces_as_an_option(
    texts: list[str],
) -> None:
    within = TfidfFeatures(TfidfConfig(char_max_features=None)).fit(texts)
    assert within.char is not None and "e de" not in within.char.vocabulary_
    across = TfidfFeatures(TfidfConfig(char_analyzer="char", char_max_features=None)).fit(texts)
    assert across.char is not None
    assert "e de" in across.char.vocabulary_  # " de " joins many French words: only "char" n-grams hold it


@pytest.mark.parametrize("default", ["char_wb", "char"])
def test_tfidf_saved_before_the_analyzer_setting_loads_as_char_wb(
    texts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default: str
) -> None:
    """A model saved before ``char_analyzer`` existed used n-grams within words, and its saved configuration
    does not say so: it must keep them, or its vocabulary would meet other n-grams (and score silently
    worse); a report's configuration is read the same way for a warm retrain. That must not hang on the
    default of the day: the test runs again with the default switched to ``char``."""
    defaults = TfidfConfig.__init__.__defaults__
    assert defaults is not None and defaults[-1] == "char_wb"  # char_analyzer is the last field
    monkeypatch.setattr(TfidfConfig.__init__, "__defaults__", (*defaults[:-1], default))
    assert TfidfConfig().char_analyzer == default
    old = TfidfFeatures(TfidfConfig(char_analyzer="char_wb")).fit(texts[:200])
    old.save(tmp_path)
    meta = json.loads((tmp_path / "tfidf.json").read_text(encoding="utf-8"))
    del meta["config"]["char_analyzer"]
    (tmp_path / "tfidf.json").write_text(json.dumps(meta), encoding="utf-8")
    loaded = TfidfFeatures.load(tmp_path)
    assert loaded.config.char_analyzer == "char_wb"
    assert (loaded.transform(texts[200:]) != old.transform(texts[200:])).nnz == 0
    assert TfidfConfig.from_saved({"char_ngrams": [2, 4]}) == TfidfConfig(
        char_ngrams=(2, 4), char_analyzer="char_wb"
    )
    assert TfidfConfig.from_saved({"char_analyzer": "char"}).char_analyzer == "char"
    assert TrainConfig(tfidf={"char_analyzer": "char"}).tfidf.char_analyzer == "char"  # type: ignore[arg-type]


# -- linear heads -----------------------------------------------------------------------------------------

CLASSES = np.array([10, 40, 50, 60, 2583], dtype=np.int64)


def blobs(labels: list[int], n_per: int = 40, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(0, 3, dim) for c in labels}
    x = np.vstack([centres[c] + rng.normal(0, 1, (n_per, dim)) for c in labels]).astype(np.float32)
    y = np.repeat(np.array(labels, dtype=np.int64), n_per)
    return x, y


def test_logistic_head_aligns_columns_when_it_saw_only_some_classes() -> None:
    seen = [10, 50, 2583]
    x, y = blobs(seen)
    head = fit_logistic(x, y, CLASSES, c=1.0, seed=0, standardize=False)
    assert head.coef.shape == (len(CLASSES), x.shape[1])
    unseen = ~np.isin(CLASSES, seen)
    assert np.all(head.coef[unseen] == 0)
    assert np.all(head.intercept[unseen] == MISSING_CLASS_SCORE)
    reference = LogisticRegression(C=1.0, max_iter=500, random_state=0).fit(x, y)
    proba = np.exp(head.log_proba(x))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(proba[:, ~unseen], reference.predict_proba(x), atol=1e-6)
    assert np.all(proba[:, unseen] < 1e-6)
    np.testing.assert_array_equal(CLASSES[proba.argmax(axis=1)], reference.predict(x))


def test_logistic_head_binary_case_keeps_both_classes() -> None:
    x, y = blobs([40, 60])
    head = fit_logistic(x, y, CLASSES, c=1.0, seed=0, standardize=False)
    reference = LogisticRegression(C=1.0, max_iter=500, random_state=0).fit(x, y)
    proba = np.exp(head.log_proba(x))
    np.testing.assert_allclose(proba[:, [1, 3]], reference.predict_proba(x), atol=1e-6)
    np.testing.assert_array_equal(CLASSES[proba.argmax(axis=1)], reference.predict(x))


@pytest.mark.parametrize("seen", [[10, 50, 2583], [40, 60]])
def test_svm_head_aligns_columns_and_agrees_with_sklearn(seen: list[int]) -> None:
    x, y = blobs(seen, seed=1)
    head = fit_svm(x, y, CLASSES, c=1.0, seed=0)
    reference = LinearSVC(C=1.0, random_state=0).fit(x, y)
    scores = head.scores(x)
    assert scores.shape == (len(x), len(CLASSES))
    np.testing.assert_array_equal(CLASSES[scores.argmax(axis=1)], reference.predict(x))
    assert np.all(scores[:, ~np.isin(CLASSES, seen)] == MISSING_CLASS_SCORE)


@pytest.mark.parametrize("seen", [[10, 50, 2583], [40, 60]])
def test_lda_head_gives_the_lda_posterior_over_the_full_class_list(seen: list[int]) -> None:
    x, y = blobs(seen, seed=3)
    x = x + np.random.default_rng(3).normal(scale=6.0, size=x.shape)  # overlapping classes: soft posteriors
    head = fit_lda(x, y, CLASSES)
    reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
    assert head.kind == "logistic" and head.mean is None  # stored and evaluated like a logistic head
    proba = np.exp(head.log_proba(x))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(proba[:, np.isin(CLASSES, seen)], reference.predict_proba(x), atol=1e-5)
    assert (reference.predict_proba(x).max(axis=1) < 0.99).any()  # soft posteriors, not only 0 and 1
    assert np.all(proba[:, ~np.isin(CLASSES, seen)] < 1e-9)
    np.testing.assert_array_equal(CLASSES[proba.argmax(axis=1)], reference.predict(x))


def test_lda_head_takes_a_type_with_a_single_example_quietly() -> None:
    """Feedback can bring a product type with one reviewed product: the head stays finite, gives that type
    a real score, and the covariance's warning about it does not reach the logs."""
    import warnings

    x, y = blobs([10, 40], seed=4)
    x = np.vstack([x, np.full((1, x.shape[1]), 9.0, np.float32)])
    y = np.append(y, 2583)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        head = fit_lda(x, y, CLASSES)
    assert not [w for w in caught if "one sample" in str(w.message)]
    assert np.isfinite(head.coef).all() and np.isfinite(head.intercept).all()
    assert CLASSES[head.scores(x[-1:]).argmax()] == 2583


def test_heads_need_two_classes() -> None:
    x, y = blobs([10])
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_svm(x, y, CLASSES, 1.0, 0)
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_logistic(x, y, CLASSES, 1.0, 0)
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_lda(x, y, CLASSES)


def test_head_arrays_round_trip_without_pickle(tmp_path: Path) -> None:
    x, y = blobs([10, 40, 2583], seed=2)
    head = fit_logistic(x, y, CLASSES, c=0.5, seed=0)  # standardised: mean and scale are stored too
    np.savez(tmp_path / "h.npz", **head.to_arrays("image."))
    with np.load(tmp_path / "h.npz", allow_pickle=False) as npz:
        loaded = LinearHead.from_arrays(dict(npz), "image.")
    assert loaded.kind == "logistic"
    np.testing.assert_array_equal(loaded.classes, CLASSES)
    np.testing.assert_allclose(loaded.log_proba(x), head.log_proba(x), rtol=1e-6, atol=1e-6)


def test_head_refuses_an_unknown_kind() -> None:
    arrays = LinearHead("svm", CLASSES, np.zeros((5, 2), np.float32), np.zeros(5)).to_arrays("")
    arrays["kind"] = np.array("forest")
    with pytest.raises(ValueError, match="unknown head kind 'forest'"):
        LinearHead.from_arrays(arrays, "")


# -- fusion -----------------------------------------------------------------------------------------------


def synthetic_branches(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    has_image = rng.random(n) < 0.5
    text, noise, image = rng.normal(0, 1.5, (3, n, k))
    return stack_branches(text, noise, image, has_image), has_image


def test_fusion_recovers_the_weights_that_generated_the_labels() -> None:
    n, k = 6000, 4
    branches, has_image = synthetic_branches(n, k, seed=0)
    true = Fusion(np.array([[2.0, 0.0, 0.0], [1.0, 0.0, 1.5]]), np.zeros(k))
    rng = np.random.default_rng(1)
    p = true.proba(branches, has_image)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    fitted = fit_fusion(branches, has_image, y)
    assert fitted.weights[0, 2] == 0.0, "products without an image never use the image branch"
    np.testing.assert_allclose(fitted.weights, true.weights, atol=0.2)
    np.testing.assert_allclose(fitted.bias, 0.0, atol=0.2)
    proba = fitted.proba(branches, has_image)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(proba >= 0)


def test_fusion_bias_learns_class_priors_when_branches_say_nothing() -> None:
    n, k = 2000, 3
    prior = np.array([0.6, 0.3, 0.1])
    y = np.random.default_rng(0).choice(k, size=n, p=prior)
    branches = np.zeros((2, n, k))
    has_image = np.zeros(n, bool)
    fitted = fit_fusion(branches, has_image, y)
    np.testing.assert_allclose(fitted.proba(branches, has_image)[0], np.bincount(y) / n, atol=0.02)


def test_fusion_uses_group_weights_per_product() -> None:
    branches = np.zeros((2, 2, 3))
    branches[1, :, 0] = 5.0  # the image branch favours class 0 for both products
    fusion = Fusion(np.array([[1.0, 0.0], [1.0, 1.0]]), np.zeros(3))
    proba = fusion.proba(branches, np.array([False, True]))
    np.testing.assert_allclose(proba[0], 1 / 3)
    assert proba[1].argmax() == 0 and proba[1, 0] > 0.9


def test_expected_calibration_error() -> None:
    y = np.array([0, 1, 2, 0])
    assert expected_calibration_error(np.eye(3)[y], y) == 0.0
    overconfident = np.tile([0.9, 0.05, 0.05], (4, 1))  # 90 % confident, 50 % right
    assert expected_calibration_error(overconfident, y) == pytest.approx(0.4)


# -- TrainConfig -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"folds": 1}, "folds"),
        ({"folds": 0}, "folds"),
        ({"svm_c": 0}, "svm_c"),
        ({"embed_c": -1.0}, "embed_c"),
        ({"image_c": 0.0}, "image_c"),
        ({"embedder": "bert"}, "embedder"),
        ({"embed_head": "forest"}, "embed_head"),
        ({"image_head": "LDA"}, "image_head"),
        ({"tfidf": {"word_ngrams": (2, 1)}}, "word_ngrams"),
    ],
)
def test_train_config_rejects_bad_values_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"\.{field}="):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_train_config_accepts_a_dict_for_tfidf_and_round_trips() -> None:
    cfg = TrainConfig(folds=3, embedder=None, tfidf={"char_ngrams": [1, 3]})  # type: ignore[arg-type]
    assert cfg.tfidf.char_ngrams == (1, 3)
    again = TrainConfig(**cfg.to_dict())
    assert again == cfg


def test_fit_model_refuses_too_few_products() -> None:
    products = pd.DataFrame(
        {"text": ["a", "b", "c"], "label": pd.array([10, 40, 10], dtype="Int64"), "image_path": [None] * 3}
    )
    with pytest.raises(ValueError, match="3 labelled products: too few"):
        fit_model(Dataset(products), TrainConfig(folds=2, embedder=None), progress=False)


# -- the catalogue ----------------------------------------------------------------------------------------


def test_packaged_catalogue_has_27_named_codes() -> None:
    catalog = load_catalog()
    assert len(catalog) == 27
    assert catalog.codes == sorted(catalog.codes)
    assert 2583 in catalog and 9999 not in catalog
    assert all(c.name and c.name_fr for c in catalog.categories)
    assert catalog.name(9999) == "unknown type 9999"


def test_catalogue_override_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cats.csv"
    path.write_text("prdtypecode,name,name_fr\n2583,Pools,Piscines\n10,Old books,\n42,,\n", encoding="utf-8")
    catalog = load_catalog(path)
    assert catalog.codes == [10, 42, 2583]
    assert catalog.name(2583) == "Pools"
    assert catalog.categories[0].name_fr == "Old books"  # name_fr falls back to the name
    assert catalog.name(42) == "42"  # a nameless code is named by its number
    monkeypatch.setenv("PRODTYPE_CATEGORIES_FILE", str(path))
    from prodtype.config import Settings

    assert load_catalog(Settings().categories_file) == catalog


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "no categories found (expected a header 'prdtypecode,name')"),
        ("prdtypecode\n10\n", "missing column(s) ['name']"),
        ("code,label\n10,x\n", "missing column(s) ['name', 'prdtypecode']"),
        ("prdtypecode,name\n10,Books\nten,Games\n", "line 3: prdtypecode 'ten' is not an integer"),
        ("prdtypecode,name\n10,Books\n40,Games\n10,Again\n", "line 4: prdtypecode 10 appears twice"),
    ],
)
def test_catalogue_override_errors_name_the_file_and_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "cats.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_catalogue_override_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope.csv")
