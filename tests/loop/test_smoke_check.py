"""The champion smoke check: what makes a loaded model unfit to serve, each refusal on its own.

The predictors here are stand-ins that are wrong in exactly one way (the check is about the answers'
shape, not about learning); the real bundle passes the same check in tests/api/test_models_api.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from prodtype.loop.champion import smoke_check
from prodtype.ml.predictor import Candidate, Prediction, ProductInput

KNOWN = [10, 2583, 2705]


@dataclass
class Answers:
    """Answers ``code`` with ``confidence`` and ``top_k`` candidates (``image_code`` with an image)."""

    classes: list[int] = field(default_factory=lambda: [10, 2583])
    code: int = 2583
    confidence: float = 0.8
    top_k: int = 3
    image_code: int | None = None
    calls: list[bool] = field(default_factory=list)  # has_image, per call
    version: str = "stand-in"

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        self.calls.append(image is not None)
        code = self.image_code if image is not None and self.image_code is not None else self.code
        top = [Candidate(code, "x", self.confidence)][: self.top_k]
        return Prediction(code, "x", self.confidence, top, has_image=image is not None)

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        return [self.predict(p.designation, p.description, p.image, k) for p in products]


def test_a_sane_predictor_passes_with_and_without_an_image() -> None:
    model = Answers()
    smoke_check(model, KNOWN)  # type: ignore[arg-type]
    assert model.calls == [False, True]  # a text-only and an image prediction


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (Answers(classes=[]), "the model has no classes"),
        (Answers(classes=[10, 99999]), r"predicts codes that are not product types: \[99999\]"),
        (Answers(code=1280), "smoke prediction 1280 is not one of the model's classes"),
        (Answers(image_code=1280), "smoke prediction 1280 is not one of the model's classes"),
        (Answers(confidence=1.5), "confidence 1.5 is not a probability"),
        (Answers(confidence=-0.1), "confidence -0.1 is not a probability"),
        (Answers(confidence=math.nan), "confidence nan is not a probability"),
        (Answers(top_k=0), "has no top-k candidates"),
    ],
    ids=[
        "no-classes",
        "unknown-codes",
        "answer-outside-classes",
        "image-answer-outside-classes",
        "confidence-above-1",
        "confidence-below-0",
        "confidence-nan",
        "no-top-k",
    ],
)
def test_refusals(model: Answers, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        smoke_check(model, KNOWN)  # type: ignore[arg-type]


def test_without_known_codes_any_class_is_allowed() -> None:
    smoke_check(Answers(classes=[99999], code=99999))  # type: ignore[arg-type]
