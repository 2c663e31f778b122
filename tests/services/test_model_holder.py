"""The holder of the served model: get and swap from many threads.

This checks the holder as a container (which object comes back, never a torn one); what a real bundle
answers through it is tested in tests/api with the bundle trained on the sample.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import cast

import pytest

from prodtype.ml.predictor import Predictor
from prodtype.services.errors import ModelUnavailableError
from prodtype.services.model_holder import ModelHolder


def versioned(version: str) -> Predictor:
    return cast(Predictor, SimpleNamespace(version=version))


def test_empty_holder_says_how_to_get_a_model() -> None:
    holder = ModelHolder()
    assert not holder.loaded and holder.version is None
    with pytest.raises(ModelUnavailableError, match="PRODTYPE_MODEL_PATH"):
        holder.get()


def test_swap_returns_the_previous_model() -> None:
    holder = ModelHolder()
    a, b = versioned("a"), versioned("b")
    assert holder.swap(a) is None
    assert holder.get() is a and holder.version == "a"
    assert holder.swap(b) is a
    assert holder.get() is b
    assert holder.swap(None) is b and not holder.loaded


def test_readers_always_see_a_whole_model_while_swapping() -> None:
    models = [versioned(str(i)) for i in range(50)]
    holder = ModelHolder(models[0])
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(holder.get().version)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for m in models[1:]:
        holder.swap(m)
    stop.set()
    for t in readers:
        t.join()
    assert seen <= {m.version for m in models}
    assert holder.version == "49"
