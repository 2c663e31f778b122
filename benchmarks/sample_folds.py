"""What the benchmarks that refit parts of the model on the accuracy benchmark's folds share: their
command-line options (the sample's folder, the fold seeds, the feature cache, the output file) and loading
the sample. Imported as ``sample_folds`` by scripts run as ``python benchmarks/NAME.py``."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prodtype.data.challenge import Dataset, load_dataset

if TYPE_CHECKING:
    from prodtype.ml.train import TrainConfig, TrainingResult

ROOT = Path(__file__).resolve().parent


def fold_parser(doc: str | None, out: Path | None) -> argparse.ArgumentParser:
    """Options ``--data``, ``--seeds`` (fold seeds: 0 and 1), ``--cache-dir`` and ``--out`` (``out``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data" / "rakuten")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="fold seeds")
    parser.add_argument("--cache-dir", type=Path, default=ROOT.parent / ".cache" / "bench-features")
    parser.add_argument("--out", type=Path, default=out, help="also write the table here")
    return parser


def load_sample(data: Path) -> Dataset:
    """The labelled sample in the challenge's layout, with its photos and the image-only photos."""
    return load_dataset(
        data / "X_train.csv", data / "Y_train.csv", data / "image_train", data / "image_only_train.csv"
    )


def unlabelled_texts(data: Path) -> list[str]:
    """The texts of ``X_test_sample.csv`` in ``data`` (no labels: the challenge gives none), joined as the
    model joins them; none where the file is absent."""
    import pandas as pd

    from prodtype.data.text import join_text

    path = data / "X_test_sample.csv"
    if not path.is_file():
        return []
    xt = pd.read_csv(path, index_col=0, keep_default_na=False)
    return [join_text(a, b) for a, b in zip(xt["designation"], xt["description"], strict=True)]


def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """The challenge's metric (0 for a type never predicted)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="weighted", zero_division=0))


def paired_delta(values: list[float], ref: list[float]) -> str:
    """Mean ± standard error of the per-fold differences ``values - ref`` (the same folds, in order)."""
    diffs = [a - b for a, b in zip(values, ref, strict=True)]
    return f"{statistics.mean(diffs):+.4f} ± {statistics.stdev(diffs) / len(diffs) ** 0.5:.4f}"


def write_table(lines: list[str], out: Path) -> None:
    """Print the table and write it to ``out``."""
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


def out_of_fold(ds: Dataset, config: TrainConfig, cache_dir: Path) -> TrainingResult:
    """``fit_model`` on the whole sample with the benchmark's feature caches: its branches' out-of-fold
    outputs on StratifiedKFold(``config.folds``, ``config.seed``), the folds of ``bench_accuracy.py``."""
    from prodtype.ml.train import fit_model

    result = fit_model(
        ds, config, image_cache_dir=cache_dir / "image", text_cache_dir=cache_dir / "text", progress=False
    )
    assert result.oof_branches is not None
    return result


def score_rows(
    scores: dict[str, list[float]], ref: list[float], delta: bool = True, extra: dict[str, str] | None = None
) -> list[str]:
    """Table rows ``| name | mean ± sd | paired Δ vs ref |`` (the Δ column empty without ``delta`` and on
    the row of ``ref`` itself), then ``extra[name] |`` where ``extra`` is given."""
    rows = []
    for name, values in scores.items():
        d = paired_delta(values, ref) if delta and values is not ref else ""
        more = f" {extra[name]} |" if extra is not None else ""
        rows.append(
            f"| {name} | {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} | {d} |{more}"
        )
    return rows


class Clock:
    """A benchmark's start: the time and the machine's load when it was made."""

    def __init__(self) -> None:
        self.started, self.load = time.perf_counter(), os.getloadavg()[0]

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def stamp(self, also: str = "") -> str:
        """``DATE TIME, load L at the start, [also, ]S s`` for a table's title (the time it is written)."""
        more = f"{also}, " if also else ""
        when = time.strftime("%Y-%m-%d %H:%M")
        return f"{when}, load {self.load:.1f} at the start, {more}{self.elapsed():.0f} s"


def table(title: str, columns: list[str], rows: list[str]) -> list[str]:
    """A Markdown table: ``title``, a blank line, the header of ``columns``, its rule, then ``rows``."""
    return [title, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *rows]


def fused_table(title: str, scores: dict[str, list[float]]) -> list[str]:
    """``title``, then the rows not named ``fused: ...`` (no Δ) and the ``fused: ...`` rows with their Δ
    paired against ``fused: default``."""
    ref = scores["fused: default"]
    rows = score_rows({n: v for n, v in scores.items() if not n.startswith("fused: ")}, ref, delta=False)
    rows += score_rows({n: v for n, v in scores.items() if n.startswith("fused: ")}, ref)
    return table(title, ["row", "weighted F1 (mean ± sd)", "Δ vs default fused, paired (mean ± se)"], rows)


@dataclass
class Photos:
    """The sample's labels and photo files: the products' (``y``) then the image-only photos' (``y_io``);
    ``kept`` lists the indices of ``paths`` that have a photo and ``row`` maps such an index to its row in
    arrays computed for ``kept`` only."""

    y: np.ndarray
    y_io: np.ndarray
    classes: np.ndarray
    paths: list[str | None]
    kept: list[int]
    row: dict[int, int]


def photos(ds: Dataset) -> Photos:
    from prodtype.data.challenge import image_paths

    y = ds.products["label"].to_numpy(dtype=np.int64)
    y_io = ds.image_only["label"].to_numpy(dtype=np.int64)
    paths = image_paths(ds.products) + image_paths(ds.image_only)
    kept = [i for i, p in enumerate(paths) if p]
    return Photos(
        y, y_io, np.unique(np.concatenate([y, y_io])), paths, kept, {i: j for j, i in enumerate(kept)}
    )
