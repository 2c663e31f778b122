"""What a trained model answers, and the interface every served model offers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Candidate:
    prdtypecode: int
    category: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    prdtypecode: int
    category: str
    confidence: float
    top_k: list[Candidate]
    has_image: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProductInput:
    designation: str
    description: str = ""
    image: bytes | None = None


@dataclass(frozen=True)
class PreparedProduct:
    """A product ready for the model: its cleaned text, and its photo preprocessed (uint8 HWC) or None."""

    text: str
    pixels: Any = None  # numpy array; Any keeps this module free of numpy


class Predictor(Protocol):
    """A loaded model: ``version`` identifies it; ``predict`` takes raw seller input."""

    @property
    def version(self) -> str: ...

    @property
    def classes(self) -> list[int]: ...

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction: ...

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]: ...


class PredictorWrapper:
    """A predictor that wraps another: ``version``, ``classes``, ``predict_many`` and every other attribute
    are the inner one's unless a subclass overrides them (the service's batching and metrics wrappers)."""

    def __init__(self, inner: Predictor) -> None:
        self._inner = inner

    @property
    def version(self) -> str:
        return self._inner.version

    @property
    def classes(self) -> list[int]:
        return self._inner.classes

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        return self._inner.predict_many(products, k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
