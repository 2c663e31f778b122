"""Reading the challenge format: X csv, Y csv, an image folder, and optional image-only labels.

The official layout (and the sample in ``../shared/data/rakuten``)::

    X_train_update.csv   ,designation,description,productid,imageid   (first column = official index)
    Y_train_CVw08PX.csv  ,prdtypecode                                 (same index)
    image_train/image_<imageid>_product_<productid>.jpg
    image_only_train.csv imageid,productid,train_index,prdtypecode    (optional: labelled images, no text)

Every error names the file, the row and the column, and says what was expected.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from prodtype.data.text import clean_text, join_text

X_COLUMNS = ("designation", "description", "productid", "imageid")
IMAGE_ONLY_COLUMNS = ("imageid", "productid", "prdtypecode")


class DataError(ValueError):
    """Input data does not follow the challenge format."""


def image_filename(imageid: int, productid: int) -> str:
    return f"image_{imageid}_product_{productid}.jpg"


@dataclass
class Dataset:
    """Products (text, optional image, optional label) plus labelled images without text."""

    products: pd.DataFrame  # index: official row index; text, image_path (str or None), label (Int64)
    image_only: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["image_path", "label"]))
    missing_images: list[str] = field(default_factory=list)
    extra_labels: int = 0
    fingerprint: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> pd.Series:
        return self.products["label"]

    def __len__(self) -> int:
        return len(self.products)


def _read_csv(path: Path, what: str, **kwargs: object) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    try:
        return pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({exc})") from None


def _check_columns(df: pd.DataFrame, path: Path, required: tuple[str, ...], layout: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; expected the header {layout} (found {list(df.columns)})"
        )


def _check_unique_index(df: pd.DataFrame, path: Path) -> None:
    dup = df.index[df.index.duplicated()]
    if len(dup):
        shown = ", ".join(str(i) for i in dup[:5])
        raise DataError(f"{path}: duplicated index value(s) in the first column: {shown}")


def _integer_column(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = df.index[bad.to_numpy()][0]
        raise DataError(
            f"{path}, row {row}, column '{column}': {df[column][row]!r} is not an integer "
            f"({int(bad.sum())} such row(s))"
        )
    return values.astype("int64")


def read_products(x_path: Path) -> pd.DataFrame:
    """The X file, validated: unique index, integer ids, a non-empty designation on every row."""
    x_path = Path(x_path)
    df = _read_csv(x_path, "X", index_col=0, dtype={"designation": str, "description": str})
    return _validate_products(df, x_path)


def iter_products(x_path: Path, chunksize: int = 1000) -> Iterator[pd.DataFrame]:
    """The X file in validated chunks, for streaming predictions over files of any size."""
    x_path = Path(x_path)
    if not x_path.is_file():
        raise DataError(f"X file {x_path} does not exist")
    seen: set[object] = set()
    try:
        reader = pd.read_csv(
            x_path, index_col=0, dtype={"designation": str, "description": str}, chunksize=chunksize
        )
        for chunk in reader:
            dup = seen.intersection(chunk.index)
            if dup:
                raise DataError(
                    f"{x_path}: duplicated index value(s) in the first column: {sorted(map(str, dup))[:5]}"
                )
            seen.update(chunk.index)
            yield _validate_products(chunk, x_path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{x_path}: cannot be read as CSV ({exc})") from None


def _validate_products(df: pd.DataFrame, x_path: Path) -> pd.DataFrame:
    _check_columns(df, x_path, X_COLUMNS, "',designation,description,productid,imageid'")
    _check_unique_index(df, x_path)
    for col in ("productid", "imageid"):
        df[col] = _integer_column(df, col, x_path)
    designation = df["designation"].map(clean_text)
    empty = designation == ""
    if empty.any():
        row = df.index[empty.to_numpy()][0]
        raise DataError(
            f"{x_path}, row {row}, column 'designation': empty; every product needs a title "
            f"({int(empty.sum())} such row(s))"
        )
    df["description"] = df["description"].fillna("")
    df["text"] = [join_text(d, s) for d, s in zip(df["designation"], df["description"], strict=True)]
    return df


def read_labels(y_path: Path) -> pd.Series:
    """The Y file: one integer ``prdtypecode`` per index value."""
    y_path = Path(y_path)
    df = _read_csv(y_path, "Y", index_col=0)
    _check_columns(df, y_path, ("prdtypecode",), "',prdtypecode'")
    _check_unique_index(df, y_path)
    return _integer_column(df, "prdtypecode", y_path)


def _image_index(images_dir: Path | None) -> set[str]:
    if images_dir is None:
        return set()
    if not images_dir.is_dir():
        raise DataError(f"image folder {images_dir} does not exist")
    return {e.name for e in os.scandir(images_dir) if e.is_file()}


def _attach_images(
    ids: pd.DataFrame, images_dir: Path | None, present: set[str]
) -> tuple[list[str | None], list[str]]:
    paths: list[str | None] = []
    missing: list[str] = []
    for imageid, productid in zip(ids["imageid"], ids["productid"], strict=True):
        name = image_filename(int(imageid), int(productid))
        if images_dir is not None and name in present:
            paths.append(str(images_dir / name))
        else:
            paths.append(None)
            missing.append(name)
    return paths, missing


def image_paths(frame: pd.DataFrame) -> list[str | None]:
    """The ``image_path`` column as plain strings, None where a product has no image."""
    return [p if isinstance(p, str) and p else None for p in frame["image_path"]]


def read_image_only(path: Path, images_dir: Path | None, present: set[str]) -> pd.DataFrame:
    """Labelled images without text (``imageid,productid,...,prdtypecode``); rows without a file drop."""
    path = Path(path)
    df = _read_csv(path, "image-only")
    _check_columns(df, path, IMAGE_ONLY_COLUMNS, "'imageid,productid,...,prdtypecode'")
    for col in IMAGE_ONLY_COLUMNS:
        df[col] = _integer_column(df, col, path)
    paths, _ = _attach_images(df, images_dir, present)
    out = pd.DataFrame({"image_path": paths, "label": df["prdtypecode"].to_numpy()})
    return out[out["image_path"].notna()].reset_index(drop=True)


def fingerprint_files(paths: list[Path], image_names: set[str]) -> str:
    """sha256 over the data files' bytes and the sorted image file names."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    for name in sorted(image_names):
        h.update(name.encode())
    return h.hexdigest()


def load_dataset(
    x_path: Path,
    y_path: Path | None = None,
    images_dir: Path | None = None,
    image_only_path: Path | None = None,
) -> Dataset:
    """Read and validate a challenge-format dataset. Without ``y_path`` the products are unlabelled.

    Every X row needs a label in Y; Y rows for products not in X (e.g. the full official label file
    beside a subset of X) are allowed and counted in ``extra_labels``.
    """
    x_path = Path(x_path)
    images_dir = Path(images_dir) if images_dir is not None else None
    products = read_products(x_path)
    extra = 0
    if y_path is not None:
        y_path = Path(y_path)
        labels = read_labels(y_path)
        unlabeled = products.index.difference(labels.index)
        if len(unlabeled):
            shown = ", ".join(str(i) for i in unlabeled[:5])
            raise DataError(
                f"X/Y index mismatch: {len(unlabeled)} row(s) of {x_path} have no label in {y_path} "
                f"(first: {shown}); both files must share the official index in their first column"
            )
        extra = len(labels.index.difference(products.index))
        products["label"] = labels.reindex(products.index).astype("Int64")
    else:
        products["label"] = pd.array([pd.NA] * len(products), dtype="Int64")
    present = _image_index(images_dir)
    paths, missing = _attach_images(products, images_dir, present)
    products["image_path"] = paths
    image_only = pd.DataFrame(columns=["image_path", "label"])
    if image_only_path is not None:
        image_only = read_image_only(Path(image_only_path), images_dir, present)
    files = [p for p in (x_path, y_path, image_only_path) if p is not None]
    return Dataset(
        products=products,
        image_only=image_only,
        missing_images=missing,
        extra_labels=extra,
        fingerprint=fingerprint_files([Path(p) for p in files], present),
        sources={
            "x": str(x_path),
            "y": str(y_path) if y_path else "",
            "images": str(images_dir) if images_dir else "",
            "image_only": str(image_only_path) if image_only_path else "",
        },
    )


@dataclass(frozen=True)
class ChallengeFiles:
    """Where a download folder keeps the challenge files (``images`` and ``image_only`` may be absent)."""

    x: Path
    y: Path
    images: Path | None
    image_only: Path | None

    def load(self) -> Dataset:
        return load_dataset(self.x, self.y, self.images, self.image_only)


def find_challenge_files(data_dir: Path) -> ChallengeFiles:
    """Locate the usual file names in a download folder (official names first, then the sample's)."""
    data_dir = Path(data_dir)

    def first(*names: str) -> Path | None:
        for n in names:
            if (data_dir / n).exists():
                return data_dir / n
        return None

    x = first("X_train_update.csv", "X_train.csv")
    y = first("Y_train.csv", "Y_train_CVw08PX.csv") if x and x.name == "X_train.csv" else None
    y = y or first("Y_train_CVw08PX.csv", "Y_train.csv")
    if x is None or y is None:
        raise DataError(
            f"{data_dir}: expected X_train_update.csv (or X_train.csv) and Y_train_CVw08PX.csv "
            "(or Y_train.csv); see the README for how to download the challenge data"
        )
    return ChallengeFiles(
        x=x,
        y=y,
        images=first("image_train", "images/image_train"),
        image_only=first("image_only_train.csv"),
    )
