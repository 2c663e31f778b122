"""Stand-ins for the model where a test is about the loop's bookkeeping, not about learning.

A fake bundle is a folder with a manifest naming the code it always predicts and the evaluation figures the
fake scorer reports for it; the real pipeline is exercised end to end in tests/e2e.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prodtype.data.challenge import Dataset
from prodtype.ml.predictor import Candidate, Prediction, ProductInput


class FakePredictor:
    def __init__(self, manifest: dict[str, Any]) -> None:
        self.manifest = manifest
        self._classes = [int(c) for c in manifest["classes"]]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def classes(self) -> list[int]:
        return self._classes

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        if self.manifest.get("broken"):
            raise RuntimeError("this bundle is broken")
        code = int(self.manifest["code"])
        return Prediction(code, "fake", 0.9, [Candidate(code, "fake", 0.9)], has_image=image is not None)

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        return [self.predict(p.designation, p.description, p.image, k) for p in products]


def write_bundle(folder: Path, **manifest: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest.setdefault("version", folder.name)
    manifest.setdefault("classes", [10, 2583, 2705])
    manifest.setdefault("code", 2583)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def load_fake(path: Path) -> FakePredictor:
    return FakePredictor(json.loads((Path(path) / "manifest.json").read_text()))


class FakeTrainer:
    """Writes a fake bundle whose evaluation score is the next of ``scores``; records what it was given."""

    def __init__(self, *scores: float, per_class: dict[str, float] | None = None) -> None:
        self.scores = list(scores)
        self.per_class = per_class or {}
        self.seen: list[Dataset] = []

    def __call__(self, data: Dataset, out_dir: Path, progress: bool) -> Path:
        self.seen.append(data)
        score = self.scores.pop(0)
        return write_bundle(
            out_dir,
            version=f"fake-{len(self.seen)}",
            classes=sorted(int(c) for c in data.products["label"].unique()),
            score=score,
            per_class=self.per_class,
        )


def fake_score(bundle: Path, data: Dataset, report_dir: Path) -> dict[str, Any]:
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    score = float(manifest["score"])
    codes = sorted(int(c) for c in data.products["label"].unique())
    per_class = {
        str(c): {
            "precision": score,
            "recall": score,
            "f1": manifest["per_class"].get(str(c), score),
            "support": 10,
        }
        for c in codes
    }
    (report_dir / "report.md").write_text(f"# fake report\n\nweighted F1 {score}\n")
    return {
        "weighted_f1": score,
        "macro_f1": score,
        "accuracy": score,
        "n": len(data),
        "per_class": per_class,
    }
