"""Waiting in tests on a condition with a deadline, never on the clock alone."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(
    condition: Callable[[], object],
    timeout: float = 30.0,
    message: Callable[[], str] | str = "the condition did not hold",
    every: float = 0.01,
) -> None:
    """Poll ``condition`` every ``every`` seconds until it holds; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"after {timeout:g} s: {text}")
        time.sleep(every)
