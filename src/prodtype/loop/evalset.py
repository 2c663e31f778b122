"""The fixed evaluation set: never trained on, the same for every candidate and champion.

Either configured files (``PRODTYPE_EVAL_X_PATH``/``PRODTYPE_EVAL_Y_PATH``), or a stratified split of the
base data made once and recorded in ``<storage>/loop/eval_split.json`` with the base data's fingerprint.
A later retrain on the same base data reads the recorded split back; base data that changed (another
fingerprint) gets a new split, and the old record is kept beside it, named by its fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prodtype.config import LoopSettings
from prodtype.data.challenge import Dataset, load_dataset
from prodtype.files import atomic_write_text

log = logging.getLogger(__name__)

SPLIT_FILE = "eval_split.json"


@dataclass(frozen=True)
class EvalSplit:
    train: Dataset  # base products that may be trained on (with the base's image-only images)
    eval: Dataset  # the evaluation products
    fingerprint: str  # identifies the evaluation set
    source: str  # "split" or "files"


def stratified_eval_index(labels: pd.Series, fraction: float, seed: int) -> list[int]:
    """About ``fraction`` of each class, at least one product per class that has two or more, and never
    a whole class (a class with one product stays in training)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for code in sorted(labels.unique()):
        members = np.array(sorted(labels.index[labels == code]))
        if len(members) < 2:
            continue
        n_eval = min(len(members) - 1, max(1, round(fraction * len(members))))
        chosen.extend(int(i) for i in rng.choice(members, size=n_eval, replace=False))
    return sorted(chosen)


def _subset(ds: Dataset, index: pd.Index, fingerprint: str, image_only: bool) -> Dataset:
    return Dataset(
        products=ds.products.loc[index],
        image_only=ds.image_only if image_only else ds.image_only.iloc[0:0],
        missing_images=[],
        extra_labels=0,
        fingerprint=fingerprint,
        sources=dict(ds.sources),
    )


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def load_or_make_split(base: Dataset, loop: LoopSettings, loop_dir: Path) -> EvalSplit:
    """The evaluation set for ``base`` (configured files, the recorded split, or a new recorded split)."""
    if loop.eval_x_path is not None and loop.eval_y_path is not None:
        ev = load_dataset(loop.eval_x_path, loop.eval_y_path, loop.eval_images_dir)
        eval_texts = set(ev.products["text"])
        train_index = base.products.index[~base.products["text"].isin(eval_texts)]
        train = _subset(base, train_index, _fingerprint(base.fingerprint, "minus", ev.fingerprint), True)
        return EvalSplit(train=train, eval=ev, fingerprint=ev.fingerprint, source="files")

    record_path = loop_dir / SPLIT_FILE
    record: dict[str, object] | None = None
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("base_fingerprint") != base.fingerprint:
            old = str(record.get("base_fingerprint", "unknown"))[:12]
            record_path.rename(loop_dir / f"eval_split-{old}.json")
            log.warning(
                "the base data changed (fingerprint %s, split was for %s): making a new evaluation set",
                base.fingerprint[:12],
                old,
            )
            record = None
    if record is None:
        labels = base.products["label"].astype("int64")
        index = stratified_eval_index(labels, loop.eval_fraction, loop.eval_seed)
        record = {
            "base_fingerprint": base.fingerprint,
            "fraction": loop.eval_fraction,
            "seed": loop.eval_seed,
            "n": len(index),
            "fingerprint": _fingerprint(base.fingerprint, loop.eval_fraction, loop.eval_seed, index),
            "index": index,
        }
        atomic_write_text(record_path, json.dumps(record))
        log.info(
            "evaluation set: %d of %d base products (recorded in %s)", len(index), len(base), record_path
        )
    raw_index = record["index"]
    assert isinstance(raw_index, list)
    eval_index = pd.Index([int(i) for i in raw_index])
    missing = eval_index.difference(base.products.index)
    if len(missing):
        raise ValueError(
            f"{record_path}: {len(missing)} evaluation rows are not in the base data; delete the file"
        )
    fingerprint = str(record["fingerprint"])
    train_index = base.products.index.difference(eval_index)
    return EvalSplit(
        train=_subset(base, train_index, _fingerprint(base.fingerprint, "train-for", fingerprint), True),
        eval=_subset(base, eval_index, fingerprint, False),
        fingerprint=fingerprint,
        source="split",
    )
