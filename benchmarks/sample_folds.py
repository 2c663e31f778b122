"""What the benchmarks that refit parts of the model on the accuracy benchmark's folds share: their
command-line options (the sample's folder, the fold seeds, the feature cache, the output file) and loading
the sample. Imported as ``sample_folds`` by scripts run as ``python benchmarks/NAME.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from prodtype.data.challenge import Dataset, load_dataset

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


def paired_delta(values: list[float], ref: list[float]) -> str:
    """Mean ± standard error of the per-fold differences ``values - ref`` (the same folds, in order)."""
    import statistics

    diffs = [a - b for a, b in zip(values, ref, strict=True)]
    return f"{statistics.mean(diffs):+.4f} ± {statistics.stdev(diffs) / len(diffs) ** 0.5:.4f}"


def write_table(lines: list[str], out: Path) -> None:
    """Print the table and write it to ``out``."""
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
