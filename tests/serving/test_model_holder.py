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
from prodtype.serving.errors import ModelUnavailableError
from prodtype.serving.model_holder import ModelHolder
from service_support.waiting import until


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
    """Readers run while the models are swapped in order: each read gives one of the installed models,
    never an error, and no reader ever goes back to an older model once it saw a newer one."""
    models = [versioned(str(i)) for i in range(20)]
    holder = ModelHolder(models[0])
    readers = 4
    seen: list[list[int]] = [[] for _ in range(readers)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def read(mine: list[int]) -> None:
        try:
            while not stop.is_set():
                mine.append(int(holder.get().version))
        except BaseException as exc:  # an exception in a thread is only a warning to pytest: keep it
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(seen[i],)) for i in range(readers)]
    for t in threads:
        t.start()
    try:
        for i, m in enumerate(models[1:], start=1):
            holder.swap(m)
            # Overlap for real: every reader reads the new model before the next swap.
            until(
                lambda i=i: errors or all(s and s[-1] == i for s in seen), 10, f"readers never saw model {i}"
            )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    for mine in seen:
        assert mine == sorted(mine), "a reader saw an older model after a newer one"
        assert set(mine) == set(range(20))  # each reader saw every model
    assert holder.version == "19"
