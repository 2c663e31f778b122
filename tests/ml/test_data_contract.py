"""Data tests: the contract of the shared challenge sample (columns, index, labels, text, images, counts).

They read the raw files (what a download looks like) and the validated :class:`Dataset` built from them,
so a sample refresh that breaks the format, or a reader that silently drops rows, fails here first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from prodtype.catalog import load_catalog
from prodtype.data.challenge import find_challenge_files, image_filename

IMAGE_NAME = re.compile(r"image_(\d+)_product_(\d+)\.jpg")


@pytest.fixture(scope="module")
def raw_x(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "X_train.csv", index_col=0)


@pytest.fixture(scope="module")
def raw_y(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "Y_train.csv", index_col=0)


@pytest.fixture(scope="module")
def raw_image_only(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "image_only_train.csv")


@pytest.fixture(scope="module")
def train_image_names(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "image_train").iterdir() if p.is_file()}


def test_x_has_the_official_columns(data_dir: Path, raw_x: pd.DataFrame) -> None:
    header = (data_dir / "X_train.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == ",designation,description,productid,imageid"
    assert list(raw_x.columns) == ["designation", "description", "productid", "imageid"]
    assert pd.api.types.is_integer_dtype(raw_x["productid"])
    assert pd.api.types.is_integer_dtype(raw_x["imageid"])


def test_y_has_the_official_columns(data_dir: Path, raw_y: pd.DataFrame) -> None:
    header = (data_dir / "Y_train.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == ",prdtypecode"
    assert list(raw_y.columns) == ["prdtypecode"]
    assert pd.api.types.is_integer_dtype(raw_y["prdtypecode"])


def test_image_only_has_its_columns(raw_image_only: pd.DataFrame) -> None:
    assert list(raw_image_only.columns) == ["imageid", "productid", "train_index", "prdtypecode"]
    assert all(pd.api.types.is_integer_dtype(raw_image_only[c]) for c in raw_image_only.columns)


def test_indexes_are_unique(raw_x: pd.DataFrame, raw_y: pd.DataFrame) -> None:
    assert raw_x.index.is_unique
    assert raw_y.index.is_unique
    assert raw_x["productid"].is_unique, "one row per product"


def test_x_and_y_share_the_same_index(raw_x: pd.DataFrame, raw_y: pd.DataFrame) -> None:
    assert raw_x.index.equals(raw_y.index)


def test_every_label_is_one_of_the_27_catalogue_codes(
    raw_y: pd.DataFrame, raw_image_only: pd.DataFrame
) -> None:
    catalog = load_catalog()
    assert len(catalog) == 27
    labels = set(raw_y["prdtypecode"]) | set(raw_image_only["prdtypecode"])
    assert labels <= set(catalog.codes), sorted(labels - set(catalog.codes))
    assert set(raw_y["prdtypecode"]) == set(catalog.codes), "the sample covers every product type"


def test_packaged_catalogue_matches_the_sample_categories_file(data_dir: Path) -> None:
    sample = pd.read_csv(data_dir / "categories.csv")
    assert sorted(sample["prdtypecode"]) == load_catalog().codes


def test_designation_is_never_empty(raw_x: pd.DataFrame) -> None:
    assert raw_x["designation"].notna().all()
    assert (raw_x["designation"].str.strip() != "").all()


def test_image_file_names_parse(train_image_names: set[str], data_dir: Path) -> None:
    test_names = {p.name for p in (data_dir / "image_test").iterdir() if p.is_file()}
    for names in (train_image_names, test_names):
        assert names
        bad = sorted(n for n in names if not IMAGE_NAME.fullmatch(n))
        assert not bad, f"file names not of the form image_<imageid>_product_<productid>.jpg: {bad[:5]}"


def test_image_only_rows_reference_existing_files(
    raw_image_only: pd.DataFrame, train_image_names: set[str], raw_x: pd.DataFrame
) -> None:
    names = [
        image_filename(i, p)
        for i, p in zip(raw_image_only["imageid"], raw_image_only["productid"], strict=True)
    ]
    missing = [n for n in names if n not in train_image_names]
    assert not missing, missing[:5]
    assert not raw_image_only["train_index"].isin(raw_x.index).any(), "image-only rows have no text in X"


def test_counts_stated_in_the_sample_readme(
    raw_x: pd.DataFrame, raw_y: pd.DataFrame, raw_image_only: pd.DataFrame, train_image_names: set[str]
) -> None:
    assert len(raw_x) == len(raw_y) == 1898
    with_image = sum(
        image_filename(i, p) in train_image_names
        for i, p in zip(raw_x["imageid"], raw_x["productid"], strict=True)
    )
    assert with_image == 479
    assert len(raw_image_only) == 955
    assert len(train_image_names) == 1434


def test_loaded_dataset_keeps_every_row_and_image(sample_dataset, raw_x: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    products = sample_dataset.products
    assert len(sample_dataset) == 1898
    assert products.index.equals(raw_x.index)
    assert products["label"].notna().all()
    assert int(products["image_path"].notna().sum()) == 479
    assert len(sample_dataset.missing_images) == 1898 - 479
    assert len(sample_dataset.image_only) == 955
    assert all(Path(p).is_file() for p in products["image_path"].dropna())
    assert (products["text"].str.len() > 0).all()
    assert len(sample_dataset.fingerprint) == 64


def test_find_challenge_files_locates_the_sample(data_dir: Path) -> None:
    found = find_challenge_files(data_dir)
    assert found.x == data_dir / "X_train.csv"
    assert found.y == data_dir / "Y_train.csv"
    assert found.images == data_dir / "image_train"
    assert found.image_only == data_dir / "image_only_train.csv"
