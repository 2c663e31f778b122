"""One test per validation error of the challenge reader: each message names the file, the row and the
column (or what was expected), so a user can fix the input without reading our code.

Missing or unreadable images are not errors: the product stays (text only) and training counts them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from prodtype.data.challenge import (
    DataError,
    image_filename,
    iter_products,
    load_dataset,
    read_labels,
    read_products,
)

N_ROWS = 8


@pytest.fixture(scope="module")
def sample_rows(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0, nrows=N_ROWS)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0, nrows=N_ROWS)
    return x, y


@pytest.fixture
def files(tmp_path: Path, sample_rows: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Path, Path]:
    """A valid X/Y pair of real sample rows in tmp_path; tests rewrite one of them to break it."""
    x, y = sample_rows
    x.to_csv(tmp_path / "X.csv")
    y.to_csv(tmp_path / "Y.csv")
    return tmp_path / "X.csv", tmp_path / "Y.csv"


def raises(match_all: list[str], fn, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(DataError) as info:
        fn(*args)
    message = str(info.value)
    for part in match_all:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message
    return message


def test_valid_files_load(files: tuple[Path, Path]) -> None:
    ds = load_dataset(*files)
    assert len(ds) == N_ROWS
    assert ds.products["label"].notna().all()


def test_missing_column_in_x(
    files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    x_path, y_path = files
    sample_rows[0].drop(columns=["description"]).to_csv(x_path)
    raises(
        [str(x_path), "'description'", "expected the header ',designation,description,productid,imageid'"],
        load_dataset,
        x_path,
        y_path,
    )


def test_missing_column_in_y(
    files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    x_path, y_path = files
    sample_rows[1].rename(columns={"prdtypecode": "code"}).to_csv(y_path)
    raises(
        [str(y_path), "'prdtypecode'", "expected the header ',prdtypecode'", "'code'"],
        load_dataset,
        x_path,
        y_path,
    )


def test_x_y_index_mismatch(files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    x_path, y_path = files
    y = sample_rows[1]
    dropped = y.index[3]
    y.drop(index=dropped).to_csv(y_path)
    message = raises(
        [str(x_path), str(y_path), "index mismatch", "first column"], load_dataset, x_path, y_path
    )
    assert f"first: {dropped}" in message


def test_extra_labels_in_y_are_allowed_and_counted(data_dir: Path, files: tuple[Path, Path]) -> None:
    ds = load_dataset(files[0], data_dir / "Y_train.csv")
    assert len(ds) == N_ROWS
    assert ds.extra_labels == 1898 - N_ROWS


@pytest.mark.parametrize("which", ["x", "y"])
def test_duplicated_index(
    which: str, files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    x_path, y_path = files
    frame, path = (sample_rows[0], x_path) if which == "x" else (sample_rows[1], y_path)
    dup_value = frame.index[2]
    frame.rename(index={frame.index[5]: dup_value}).to_csv(path)
    message = raises([str(path), "duplicated index", "first column"], load_dataset, x_path, y_path)
    assert str(dup_value) in message


def test_duplicated_index_across_chunks_when_streaming(
    files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    x_path, _ = files
    x = sample_rows[0]
    x.rename(index={x.index[-1]: x.index[0]}).to_csv(x_path)
    with pytest.raises(DataError, match="duplicated index") as info:
        list(iter_products(x_path, chunksize=3))
    assert str(x_path) in str(info.value)


@pytest.mark.parametrize("bad", ["Livres", "10.5", ""])
def test_label_code_not_an_integer(
    bad: str, files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    x_path, y_path = files
    y = sample_rows[1].astype(object)
    row = y.index[4]
    y.loc[row, "prdtypecode"] = bad
    y.to_csv(y_path)
    raises([str(y_path), f"row {row}", "column 'prdtypecode'", "is not an integer"], read_labels, y_path)
    raises([str(y_path), f"row {row}"], load_dataset, x_path, y_path)


def test_product_id_not_an_integer(
    files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    x_path, _ = files
    x = sample_rows[0].astype({"productid": object})
    row = x.index[1]
    x.loc[row, "productid"] = "abc"
    x.to_csv(x_path)
    raises(
        [str(x_path), f"row {row}", "column 'productid'", "'abc' is not an integer"], read_products, x_path
    )


@pytest.mark.parametrize("title", ["", "   ", "<br />", "&nbsp;"])
def test_empty_designation(
    title: str, files: tuple[Path, Path], sample_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    x_path, y_path = files
    x = sample_rows[0].copy()
    row = x.index[6]
    x.loc[row, "designation"] = title
    x.to_csv(x_path)
    raises([str(x_path), f"row {row}", "column 'designation'", "empty"], load_dataset, x_path, y_path)
    with pytest.raises(DataError, match=f"row {row}, column 'designation'"):
        list(iter_products(x_path))


def test_unreadable_csv(files: tuple[Path, Path]) -> None:
    x_path, y_path = files
    x_path.write_bytes(b",designation,description,productid,imageid\n0,\xff\xfe\xfa caf\xe9,,1,2\n")
    raises([str(x_path), "cannot be read as CSV"], load_dataset, x_path, y_path)
    with pytest.raises(DataError, match="cannot be read as CSV"):
        list(iter_products(x_path))


@pytest.mark.parametrize("which", ["x", "y"])
def test_missing_csv_file(which: str, files: tuple[Path, Path]) -> None:
    x_path, y_path = files
    gone = x_path if which == "x" else y_path
    gone.unlink()
    raises([str(gone), "does not exist"], load_dataset, x_path, y_path)


def test_missing_image_folder(files: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "no_such_images"
    raises([str(folder), "image folder", "does not exist"], load_dataset, *files, folder)


def test_missing_images_are_not_fatal(files: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    ds = load_dataset(*files, tmp_path / "images")
    assert len(ds) == N_ROWS
    assert ds.products["image_path"].isna().all()
    assert len(ds.missing_images) == N_ROWS


# -- missing and unreadable images are counted in the training report --------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """24 real products of 3 types with their photos, one photo replaced by garbage and one deleted."""
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)
    present = {p.name for p in (data_dir / "image_train").iterdir()}
    x["name"] = [image_filename(i, p) for i, p in zip(x["imageid"], x["productid"], strict=True)]
    x = x[x["name"].isin(present)].join(y)
    picked = pd.concat([x[x["prdtypecode"] == c].head(8) for c in (2583, 2705, 1160)])
    assert len(picked) == 24
    root = tmp_path_factory.mktemp("tiny")
    images = root / "images"
    images.mkdir()
    for name in picked["name"]:
        shutil.copy(data_dir / "image_train" / name, images / name)
    corrupt, deleted = picked["name"].iloc[1], picked["name"].iloc[10]
    (images / corrupt).write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    (images / deleted).unlink()
    picked[["designation", "description", "productid", "imageid"]].to_csv(root / "X.csv")
    picked[["prdtypecode"]].to_csv(root / "Y.csv")
    return {
        "dataset": load_dataset(root / "X.csv", root / "Y.csv", images),
        "corrupt": corrupt,
        "deleted": deleted,
    }


def test_missing_and_unreadable_images_are_counted_in_the_training_report(
    tiny_dataset: dict[str, object], feature_cache_dir: Path
) -> None:
    from prodtype.ml.train import TrainConfig, fit_model

    dataset = tiny_dataset["dataset"]
    assert dataset.missing_images == [tiny_dataset["deleted"]]  # type: ignore[attr-defined]
    with threadpool_limits(1):  # BLAS threads on the 2 shared cores spin against each other
        result = fit_model(
            dataset,  # type: ignore[arg-type]
            TrainConfig(folds=2, embedder=None),
            image_cache_dir=feature_cache_dir / "image",
            progress=False,
        )
    report = result.report
    assert report["rows"]["products"] == 24
    assert report["rows"]["products_with_image"] == 22
    assert report["rows"]["products_text_only"] == 2
    assert report["missing_images"] == {"count": 1, "examples": [tiny_dataset["deleted"]]}
    unreadable = report["unreadable_images"]
    assert unreadable["count"] == 1
    path, reason = unreadable["items"][0]
    assert Path(path).name == tiny_dataset["corrupt"]
    assert reason
    assert not result.has_image[1] and not result.has_image[10]
    assert result.oof_proba.shape == (24, 3)
    import prodtype

    assert report["fingerprint"] == dataset.fingerprint  # type: ignore[attr-defined]
    assert report["versions"]["prodtype"] == prodtype.__version__
    assert report["versions"]["scikit-learn"] != "not installed"
    assert set(report["timings_s"]) >= {"image_features", "text_features", "out_of_fold", "fusion"}
