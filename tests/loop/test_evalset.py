"""The fixed evaluation set: stratified, made once, recorded by the base data's fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from prodtype.config import LoopSettings
from prodtype.data.challenge import load_dataset
from prodtype.loop.evalset import SPLIT_FILE, load_or_make_split, stratified_eval_index


def test_stratified_index_keeps_every_class_in_training() -> None:
    labels = pd.Series([1] * 10 + [2] * 3 + [3] * 1, index=range(100, 114))
    chosen = stratified_eval_index(labels, 0.2, seed=1)
    assert chosen == stratified_eval_index(labels, 0.2, seed=1)
    by_class = labels[chosen].value_counts().to_dict()
    assert by_class == {1: 2, 2: 1}  # 20% of 10, at least one of 3, none of a single product


def test_split_is_recorded_and_reused(tmp_path: Path, data_dir: Path) -> None:
    base = load_dataset(
        data_dir / "X_train.csv",
        data_dir / "Y_train.csv",
        data_dir / "image_train",
        data_dir / "image_only_train.csv",
    )
    loop = LoopSettings(_env_file=None)  # type: ignore[call-arg]
    first = load_or_make_split(base, loop, tmp_path)
    record = json.loads((tmp_path / SPLIT_FILE).read_text())
    assert record["base_fingerprint"] == base.fingerprint and record["n"] == len(first.eval)
    assert first.eval.products.index.intersection(first.train.products.index).empty
    assert len(first.train) + len(first.eval) == len(base)
    assert abs(len(first.eval) / len(base) - loop.eval_fraction) < 0.03
    assert len(first.train.image_only) == len(base.image_only) and len(first.eval.image_only) == 0

    other_seed = LoopSettings(_env_file=None, eval_seed=7)  # type: ignore[call-arg]
    again = load_or_make_split(base, other_seed, tmp_path)  # the recorded split wins over the settings
    assert again.fingerprint == first.fingerprint
    assert list(again.eval.products.index) == list(first.eval.products.index)


def test_changed_base_data_gets_a_new_split_and_keeps_the_old_record(tmp_path: Path, data_dir: Path) -> None:
    base = load_dataset(data_dir / "X_train.csv", data_dir / "Y_train.csv")
    loop = LoopSettings(_env_file=None)  # type: ignore[call-arg]
    first = load_or_make_split(base, loop, tmp_path)
    base.fingerprint = "something-else"
    second = load_or_make_split(base, loop, tmp_path)
    assert second.fingerprint != first.fingerprint
    assert len(list(tmp_path.glob("eval_split-*.json"))) == 1


def test_configured_evaluation_files(tmp_path: Path, data_dir: Path) -> None:
    base = load_dataset(data_dir / "X_train.csv", data_dir / "Y_train.csv")
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0).iloc[:50]
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0).iloc[:50]
    x.to_csv(tmp_path / "X_eval.csv")
    y.to_csv(tmp_path / "Y_eval.csv")
    loop = LoopSettings(
        _env_file=None, eval_x_path=tmp_path / "X_eval.csv", eval_y_path=tmp_path / "Y_eval.csv"
    )  # type: ignore[call-arg]
    split = load_or_make_split(base, loop, tmp_path)
    assert split.source == "files" and len(split.eval) == 50
    assert set(split.train.products["text"]).isdisjoint(set(split.eval.products["text"]))
