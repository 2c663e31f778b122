"""The names of the retrain steps, apart from the code that runs them (``prodtype.loop.retrain.RUN_STEPS``),
so that the command line can offer them without importing the model's modules."""

from __future__ import annotations

RUN_STEP_NAMES = ("export", "train", "evaluate", "register", "promote")
STEPS = ("check", *RUN_STEP_NAMES)
