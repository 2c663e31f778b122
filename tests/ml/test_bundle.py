"""The model bundle: a faithful round trip, refusal of corrupt or incompatible bundles, and no pickles.

The round trip fits a small model (300 products, 2 folds, cached features) so that the probabilities of the
in-memory model can be compared with those of the loaded bundle; every refusal test works on a copy of the
session's ``trained_bundle``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

import prodtype
from prodtype.catalog import load_catalog
from prodtype.data.challenge import Dataset, image_paths
from prodtype.ml.bundle import FORMAT, FORMAT_VERSION, BundleError, load_bundle, read_manifest, save_bundle
from prodtype.ml.embeddings import get_embedder
from prodtype.ml.image import encoder_version
from prodtype.ml.train import TrainConfig, TrainingResult, fit_model


def stratified_subset(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """About ``n`` products in the proportions of the sample (at least 4 per class), no image-only rows."""
    products = dataset.products
    share = n / len(products)
    rng = np.random.default_rng(seed)
    rows: list[object] = []
    for _, group in products.groupby("label"):
        size = min(len(group), max(4, round(len(group) * share)))
        rows.extend(rng.choice(group.index, size=size, replace=False))
    return Dataset(
        products=products.loc[sorted(rows)].copy(),
        image_only=dataset.image_only.iloc[:0],  # the image head learns from the subset's photos only: quick
        fingerprint="subset-" + dataset.fingerprint,
    )


@pytest.fixture(scope="module")
def small_fit(sample_dataset, feature_cache_dir: Path) -> tuple[Dataset, TrainConfig, TrainingResult]:  # type: ignore[no-untyped-def]
    subset = stratified_subset(sample_dataset, 300)
    config = TrainConfig(folds=2)
    with threadpool_limits(1):  # two BLAS threads on the 2 shared cores spin against each other: 10x slower
        result = fit_model(
            subset,
            config,
            image_cache_dir=feature_cache_dir / "image",
            text_cache_dir=feature_cache_dir / "text",
            progress=False,
        )
    return subset, config, result


@pytest.fixture
def bundle_copy(trained_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the session's bundle, to damage."""
    return Path(shutil.copytree(trained_bundle, tmp_path / "model"))


def edit_manifest(bundle: Path, **changes: Any) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def refused(bundle: Path, *parts: str) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# -- round trip -------------------------------------------------------------------------------------------


def test_round_trip_gives_the_same_probabilities(
    small_fit: tuple[Dataset, TrainConfig, TrainingResult], feature_cache_dir: Path, tmp_path: Path
) -> None:
    subset, config, result = small_fit
    path = save_bundle(
        result.model, tmp_path / "model", catalog=load_catalog(), config=config, report=result.report
    )
    bundle = load_bundle(path)

    # held-out style inputs: other sample products, with and without an image
    others = pd.concat(
        [subset.products.head(20), subset.products[subset.products["image_path"].notna()].head(20)]
    )
    texts = others["text"].tolist()
    feats, has_image, _ = bundle.encoder.encode_files(image_paths(others), feature_cache_dir / "image")
    assert has_image.sum() >= 20
    embeddings = get_embedder(config.embedder, None, config.embed_max_chars).encode(texts)  # type: ignore[arg-type]
    before = result.model.predict_proba(texts, embeddings, feats, has_image)
    after = bundle.predict_proba(texts, feats, has_image)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(bundle.classes, result.model.classes)


def test_manifest_records_what_the_bundle_is(
    small_fit: tuple[Dataset, TrainConfig, TrainingResult], tmp_path: Path
) -> None:
    subset, config, result = small_fit
    catalog = load_catalog()
    path = save_bundle(
        result.model,
        tmp_path / "model",
        catalog=catalog,
        config=config,
        report=result.report,
        extra_manifest={"x": 1},
    )
    manifest = read_manifest(path)
    assert manifest["format"] == FORMAT and manifest["format_version"] == FORMAT_VERSION
    assert manifest["prodtype_version"] == prodtype.__version__
    assert manifest["classes"] == sorted(int(c) for c in subset.products["label"].unique())
    assert manifest["class_names"]["2583"] == catalog.name(2583)
    assert manifest["fingerprint"] == subset.fingerprint
    assert manifest["image_encoder"] == encoder_version()
    assert manifest["embedder"] == "use-q8+title+fr-vectors"
    assert manifest["metrics"]["out_of_fold"]["weighted_f1"] > 0.3
    assert manifest["created_at"] and manifest["version"]
    assert manifest["x"] == 1
    assert set(manifest["files"]) == {p.name for p in path.iterdir()} - {"manifest.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left behind"


def test_trained_bundle_loads_and_verifies(trained_bundle: Path) -> None:
    bundle = load_bundle(trained_bundle)
    assert len(bundle.classes) == 27
    assert bundle.category(2583) == load_catalog().name(2583)
    assert bundle.version == bundle.manifest["version"]


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["heads.npz", "tfidf.json", "tfidf.npz", "training_report.json"])
def test_modified_file_is_refused_by_its_checksum(bundle_copy: Path, name: str) -> None:
    with (bundle_copy / name).open("ab") as fh:
        fh.write(b" ")
    refused(bundle_copy, str(bundle_copy), name, "corrupt (checksum mismatch)")


@pytest.mark.parametrize("name", ["heads.npz", "tfidf.json"])
def test_missing_file_is_refused(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    refused(bundle_copy, str(bundle_copy), f"{name} is missing")


def test_missing_manifest_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").unlink()
    refused(bundle_copy, str(bundle_copy), "not a model bundle", "manifest.json is missing")


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe\x00garbled", b""])
def test_garbled_manifest_is_refused(bundle_copy: Path, garbage: bytes) -> None:
    (bundle_copy / "manifest.json").write_bytes(garbage)
    refused(bundle_copy, str(bundle_copy / "manifest.json"), "is corrupt")


@pytest.mark.parametrize("content", ["[]", '{"format": "something-else", "format_version": 1}'])
def test_a_foreign_json_manifest_is_refused(bundle_copy: Path, content: str) -> None:
    (bundle_copy / "manifest.json").write_text(content, encoding="utf-8")
    refused(bundle_copy, "is not a prodtype bundle manifest")


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, "1", None])
def test_wrong_format_version_is_refused(bundle_copy: Path, version: object) -> None:
    edit_manifest(bundle_copy, format_version=version)
    refused(bundle_copy, str(bundle_copy), f"bundle format version {version!r} is not supported", "retrain")


def test_image_encoder_mismatch_is_refused(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, image_encoder="efficientnet-lite0-onnx-0000000000")
    refused(bundle_copy, "efficientnet-lite0-onnx-0000000000", encoder_version(), "retrain the model")


def test_manifest_classes_that_do_not_match_the_heads_are_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text(encoding="utf-8"))
    edit_manifest(bundle_copy, classes=manifest["classes"][:-1])
    refused(bundle_copy, "classes do not match the manifest")


@pytest.mark.parametrize("name", ["../outside.json", "/etc/passwd"])
def test_unsafe_file_names_in_the_manifest_are_refused(bundle_copy: Path, name: str) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text(encoding="utf-8"))
    edit_manifest(bundle_copy, files={**manifest["files"], name: "0" * 64})
    refused(bundle_copy, "unsafe file name")


def test_manifest_without_files_is_refused(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, files={})
    refused(bundle_copy, "lists no files")


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    refused(tmp_path / "nowhere", str(tmp_path / "nowhere"), "does not exist")
    (tmp_path / "file").write_text("x")
    refused(tmp_path / "file", "not a folder")


# -- writing ----------------------------------------------------------------------------------------------


def test_writing_into_a_non_empty_folder_needs_overwrite(
    small_fit: tuple[Dataset, TrainConfig, TrainingResult], tmp_path: Path
) -> None:
    _, config, result = small_fit
    target = tmp_path / "model"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match=rf"{target} already exists and is not empty"):
        save_bundle(result.model, target, catalog=load_catalog(), config=config, report=result.report)
    assert (target / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "nothing written beside it"

    save_bundle(
        result.model, target, catalog=load_catalog(), config=config, report=result.report, overwrite=True
    )
    assert not (target / "notes.txt").exists()
    load_bundle(target)


def test_train_model_refuses_a_non_empty_folder_before_training(tmp_path: Path) -> None:
    """The check comes first: a dataset too small to train would otherwise fail with another error."""
    from prodtype.ml.train import train_model

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("keep me")
    products = pd.DataFrame({"text": ["a"], "label": pd.array([10], dtype="Int64"), "image_path": [None]})
    config = TrainConfig(embedder=None)
    with pytest.raises(BundleError, match="already exists and is not empty"):
        train_model(Dataset(products), tmp_path / "model", config, progress=False)
    with pytest.raises(ValueError, match="too few"):
        train_model(Dataset(products), tmp_path / "model", config, progress=False, overwrite=True)
    assert (tmp_path / "model" / "notes.txt").exists()


def test_an_empty_existing_folder_is_fine(
    small_fit: tuple[Dataset, TrainConfig, TrainingResult], tmp_path: Path
) -> None:
    _, config, result = small_fit
    (tmp_path / "model").mkdir()
    load_bundle(
        save_bundle(
            result.model, tmp_path / "model", catalog=load_catalog(), config=config, report=result.report
        )
    )


# -- safe formats -----------------------------------------------------------------------------------------


def test_nothing_in_the_bundle_is_a_pickle(trained_bundle: Path) -> None:
    files = sorted(p for p in trained_bundle.rglob("*") if p.is_file())
    assert {p.suffix for p in files} <= {".json", ".npz"}, [p.name for p in files]
    npz_files = [p for p in files if p.suffix == ".npz"]
    assert {p.name for p in npz_files} == {"heads.npz", "tfidf.npz"}
    for path in npz_files:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                array = npz[key]  # raises ValueError if any array were pickled objects
                assert array.dtype != object, f"{path.name}:{key}"
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"
