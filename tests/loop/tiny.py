"""Real tiny bundles for the loop's tests: 300 products of six types sampled from the challenge sample,
trained with 2 folds and no text embedder (TF-IDF, the photos' cached features, the fusion): seconds each.

The loop's bookkeeping (registry, promotion, follower, ledger) is tested on the real thing: bundles that load,
predict, carry checksums and are scored on the evaluation set.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from prodtype.data.challenge import Dataset, load_dataset

TYPES = (2583, 1560, 1300, 2060, 2522, 2280)
PER_TYPE = 50
SEED = 7
# Disjoint class sets, so that which bundle answered is visible in its predictions.
PAIRS = {"a": (2583, 1560), "b": (1300, 2060), "c": (2522, 2280)}
TRAIN_CONFIG: dict[str, Any] = {"folds": 2, "embedder": None}


def write_tiny_folder(data_dir: Path, out: Path, types: tuple[int, ...] = TYPES) -> Path:
    """``PER_TYPE`` products of each of ``types``, in the challenge layout (photos linked, not copied)."""
    out.mkdir(parents=True)
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0, keep_default_na=False)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)
    keep = (
        y[y["prdtypecode"].isin(types)]
        .groupby("prdtypecode", group_keys=False)
        .apply(lambda g: g.sample(PER_TYPE, random_state=SEED))
        .index
    )
    x.loc[keep].to_csv(out / "X_train.csv")
    y.loc[keep].to_csv(out / "Y_train.csv")
    (out / "image_train").symlink_to(data_dir / "image_train")
    return out


def load_tiny(folder: Path) -> Dataset:
    return load_dataset(folder / "X_train.csv", folder / "Y_train.csv", folder / "image_train")


def train_tiny(data: Dataset, out: Path, image_cache: Path) -> Path:
    from prodtype.ml.train import TrainConfig, train_model

    return train_model(data, out, TrainConfig(**TRAIN_CONFIG), image_cache_dir=image_cache, progress=False)


def copy_bundle(bundle: Path, folder: Path) -> Path:
    """A copy a test may register, break or change without touching the session's bundle."""
    shutil.copytree(bundle, folder)
    return folder
