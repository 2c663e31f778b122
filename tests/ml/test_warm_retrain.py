"""Warm retrains: keep the replaced model's TF-IDF vocabulary and fusion, skip the out-of-fold fits, start
the logistic heads from its weights; ``auto`` only does so at sizes where a full retrain is expensive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from prodtype.catalog import load_catalog
from prodtype.data.challenge import Dataset
from prodtype.ml.bundle import load_bundle, save_bundle
from prodtype.ml.evaluate import evaluate
from prodtype.ml.heads import fit_logistic, restandardized
from prodtype.ml.image import encoder_version
from prodtype.ml.train import PreviousModel, TrainConfig, fit_model, retrain_plan


def _subset(dataset: Dataset, index: np.ndarray, name: str) -> Dataset:
    return Dataset(
        dataset.products.loc[index].copy(), dataset.image_only, fingerprint=f"{name}-{dataset.fingerprint}"
    )


@pytest.fixture(scope="module")
def splits(sample_dataset: Dataset) -> dict[str, Dataset]:
    """base: 900 products; more: base + 300 new ones; held: the rest (never trained on)."""
    index = np.random.default_rng(3).permutation(sample_dataset.products.index.to_numpy())
    return {
        "base": _subset(sample_dataset, index[:900], "base"),
        "new": _subset(sample_dataset, index[900:1200], "new"),
        "more": _subset(sample_dataset, index[:1200], "more"),
        "held": _subset(sample_dataset, index[1200:], "held"),
    }


def _caches(feature_cache_dir: Path) -> dict[str, Path]:
    return {"image_cache_dir": feature_cache_dir / "image", "text_cache_dir": feature_cache_dir / "text"}


def _weighted_f1(bundle_dir: Path, data: Dataset, feature_cache_dir: Path) -> float:
    result = evaluate(load_bundle(bundle_dir), data, image_cache_dir=feature_cache_dir / "image")
    return float(result.to_dict()["weighted_f1"])


@pytest.mark.slow
def test_warm_retrain_keeps_vocabulary_and_fusion_and_learns_the_new_products(
    splits: dict[str, Dataset], feature_cache_dir: Path, tmp_path: Path
) -> None:
    caches = _caches(feature_cache_dir)
    cfg = TrainConfig(folds=2)
    first = fit_model(splits["base"], cfg, progress=False, **caches)  # type: ignore[arg-type]
    base_dir = save_bundle(
        first.model, tmp_path / "base", catalog=load_catalog(), config=cfg, report=first.report
    )
    previous = PreviousModel.load(base_dir)
    assert previous.fusion_fitted_on == 900 and first.report["retrain"]["mode"] == "full"

    warm = fit_model(
        splits["more"], TrainConfig(folds=2, retrain="warm"), progress=False, previous=previous, **caches
    )  # type: ignore[arg-type]
    report = warm.report
    assert report["retrain"] == {
        "mode": "warm",
        "reason": "warm retrain asked (retrain=warm); fusion fitted on 900 products",
        "previous": previous.manifest["version"],
    }
    assert report["fusion_fitted_on"] == 900 and report["rows"]["products"] == 1200
    assert report["timings_s"]["out_of_fold"] == 0.0 and report["folds"] == 0
    assert warm.oof_proba is None and "weighted_f1" not in report["out_of_fold"]
    # kept: the vocabulary (same terms, same weights) and the fusion
    assert warm.model.tfidf.word is not None and previous.model.tfidf.word is not None
    assert warm.model.tfidf.word.vocabulary_ == previous.model.tfidf.word.vocabulary_
    np.testing.assert_array_equal(warm.model.fusion.weights, previous.model.fusion.weights)
    np.testing.assert_array_equal(warm.model.fusion.bias, previous.model.fusion.bias)
    # refitted: every head, on the 1,200 products
    assert not np.array_equal(warm.model.text_head.coef, previous.model.text_head.coef)
    assert warm.model.embed_head is not None and previous.model.embed_head is not None
    assert not np.allclose(warm.model.embed_head.coef, previous.model.embed_head.coef)

    warm_dir = save_bundle(warm.model, tmp_path / "warm", catalog=load_catalog(), config=cfg, report=report)
    # it learned the new products (which the previous model never saw) ...
    assert (
        _weighted_f1(warm_dir, splits["new"], feature_cache_dir)
        > _weighted_f1(base_dir, splits["new"], feature_cache_dir) + 0.1
    )
    # ... and on products neither saw it is as good as a full retrain on the same 1,200 products
    full = fit_model(splits["more"], cfg, progress=False, previous=None, **caches)  # type: ignore[arg-type]
    full_dir = save_bundle(
        full.model, tmp_path / "full", catalog=load_catalog(), config=cfg, report=full.report
    )
    held_warm, held_full = (
        _weighted_f1(warm_dir, splits["held"], feature_cache_dir),
        _weighted_f1(full_dir, splits["held"], feature_cache_dir),
    )
    print(f"held-out weighted F1: warm {held_warm:.4f}, full {held_full:.4f}")
    assert held_warm > held_full - 0.02, (held_warm, held_full)

    # a warm retrain of a warm model still counts the products of the last full fit
    again = PreviousModel.load(warm_dir)
    assert again.fusion_fitted_on == 900


def test_retrain_plan_rules(trained_bundle: Path) -> None:
    previous = PreviousModel.load(trained_bundle)
    classes = np.asarray(previous.manifest["classes"], dtype=np.int64)
    version = previous.manifest["image_encoder"]
    fitted = previous.fusion_fitted_on
    assert fitted == previous.report["rows"]["products"]
    auto = TrainConfig()

    assert retrain_plan(None, auto, 10, classes, version) == (False, "no previous model")
    warm, why = retrain_plan(previous, auto, fitted + 10, classes, version)
    assert not warm and "under warm_min_products=20,000" in why  # the sample is small: full is cheap
    low = TrainConfig(warm_min_products=0)
    assert retrain_plan(previous, low, fitted + 10, classes, version)[0]
    warm, why = retrain_plan(previous, low, int(fitted * 1.3), classes, version)
    assert not warm and "more than 25% over" in why
    assert retrain_plan(
        previous, TrainConfig(warm_min_products=0, warm_max_growth=0.5), int(fitted * 1.3), classes, version
    )[0]
    assert retrain_plan(
        previous, TrainConfig(retrain="full", warm_min_products=0), fitted, classes, version
    ) == (
        False,
        "full retrain asked (retrain=full)",
    )
    forced = TrainConfig(retrain="warm")
    assert retrain_plan(previous, forced, fitted * 3, classes, version)[0]  # sizes are not checked

    # what makes the previous model unusable, named, whatever the mode
    use = "use-q8+title+fr-vectors"
    for cfg, n_classes, enc, expected in [
        (forced, np.append(classes, 99_999), version, "product types it never saw (99999)"),
        (TrainConfig(retrain="warm", embedder="e5"), classes, version, f"sentence embedder {use} -> e5"),
        (TrainConfig(retrain="warm", embedder=None), classes, version, f"sentence embedder {use} -> None"),
        (TrainConfig(retrain="warm", embed_max_chars=200), classes, version, "embed_max_chars 400 -> 200"),
        (forced, classes, encoder_version("lite0"), f"image encoder {version} -> {encoder_version('lite0')}"),
        (TrainConfig(retrain="warm", tfidf={"char_min_df": 3}), classes, version, "TF-IDF settings"),  # type: ignore[arg-type]
        (TrainConfig(retrain="warm", embed_head="logistic"), classes, version, "embed_head lda -> logistic"),
        (TrainConfig(retrain="warm", image_head="lda"), classes, version, "image_head logistic -> lda"),
    ]:
        warm, why = retrain_plan(previous, cfg, fitted, n_classes, enc)
        assert not warm and why == f"the previous model differs: {expected}"

    # a model trained before the head settings existed had logistic heads: its fusion suits no LDA head
    del previous.report["config"]["embed_head"]
    warm, why = retrain_plan(previous, forced, fitted, classes, version)
    assert not warm and why == "the previous model differs: embed_head logistic -> lda"
    # every plan above was decided from the manifest and the report: the model itself was never loaded
    assert not previous.loaded
    assert previous.model.classes.tolist() == previous.manifest["classes"] and previous.loaded


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"retrain": "sometimes"},
            "TrainConfig.retrain='sometimes': expected one of ('auto', 'warm', 'full')",
        ),
        ({"warm_max_growth": -0.1}, "expected numbers >= 0"),
        ({"warm_min_products": -1}, "expected numbers >= 0"),
    ],
)
def test_bad_retrain_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**fields)  # type: ignore[arg-type]


def test_restandardized_weights_give_the_same_scores_under_the_new_standardisation() -> None:
    rng = np.random.default_rng(0)
    x_old = rng.normal(2.0, 3.0, size=(400, 12))
    y = np.repeat(np.arange(4), 100)
    x_old[np.arange(400), y] += 4.0
    head = fit_logistic(x_old, y, np.arange(4), 1.0, 0)
    x_new = np.vstack([x_old, rng.normal(5.0, 1.0, size=(200, 12))])  # other mean and scale
    mean, scale = x_new.mean(axis=0), x_new.std(axis=0) + 1e-6
    coef, bias = restandardized(head, np.arange(4), mean, scale)
    np.testing.assert_allclose(
        ((x_new - mean) / scale) @ coef.T + bias, head.scores(x_new), rtol=1e-4, atol=1e-3
    )


def test_a_warm_started_logistic_head_reaches_the_cold_fit() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(5), 120)
    x = rng.normal(size=(600, 20))
    x[np.arange(600), y] += 2.0
    classes = np.arange(5)
    cold = fit_logistic(x, y, classes, 0.5, 0)
    # from the fit on the first 500 rows, and from a head of nonsense weights: both reach the cold optimum
    start = fit_logistic(x[:500], y[:500], classes, 0.5, 0)
    nonsense = type(start)(
        "logistic",
        classes,
        rng.normal(size=(5, 20)).astype(np.float32) * 5,
        rng.normal(size=5),
        start.mean,
        start.scale,
    )
    for init in (start, nonsense):
        warm = fit_logistic(x, y, classes, 0.5, 0, init=init)
        np.testing.assert_allclose(
            warm.log_proba(x), cold.log_proba(x), atol=2e-2
        )  # scores: up to a constant
    assert f1_score(y, cold.scores(x).argmax(1), average="weighted") > 0.7  # a learnable problem
