"""The holder of the served model: get and swap from many threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from prodtype.ml.predictor import Candidate, Prediction, ProductInput
from prodtype.services.errors import ModelUnavailableError
from prodtype.services.model_holder import ModelHolder


@dataclass
class Versioned:
    """Stands for a loaded bundle in this test of the holder's locking only; the API tests use real ones."""

    version: str
    classes: tuple[int, ...] = (10,)

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        return Prediction(10, "x", 1.0, [Candidate(10, "x", 1.0)])

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        return [self.predict(p.designation) for p in products]


def test_empty_holder_says_how_to_get_a_model() -> None:
    holder = ModelHolder()
    assert not holder.loaded and holder.version is None
    with pytest.raises(ModelUnavailableError, match="PRODTYPE_MODEL_PATH"):
        holder.get()


def test_swap_returns_the_previous_model() -> None:
    holder = ModelHolder()
    a, b = Versioned("a"), Versioned("b")
    assert holder.swap(a) is None  # type: ignore[arg-type]
    assert holder.get() is a and holder.version == "a"
    assert holder.swap(b) is a  # type: ignore[arg-type]
    assert holder.get() is b


def test_readers_always_see_a_whole_model_while_swapping() -> None:
    models = [Versioned(str(i)) for i in range(50)]
    holder = ModelHolder(models[0])  # type: ignore[arg-type]
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(holder.get().version)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for m in models[1:]:
        holder.swap(m)  # type: ignore[arg-type]
    stop.set()
    for t in readers:
        t.join()
    assert seen <= {m.version for m in models}
    assert holder.version == "49"
