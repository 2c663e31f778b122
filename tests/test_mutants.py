"""The mutants of ``make mutation`` (tests/mutants.toml) still match the code and name tests that exist.

Cheap, so it runs in ``make test``: when a module moves or a guarded line changes, this says which mutant to
update, instead of ``make mutation`` failing later. Running the mutants is ``make mutation`` (minutes).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def mutation_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_check", REPO / "scripts" / "mutation_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_check", module)
    spec.loader.exec_module(module)
    return module


def test_every_mutant_applies_to_the_code_once() -> None:
    mutants = mutation_check().load_mutants()
    assert len(mutants) >= 40
    problems = [p for m in mutants if (p := m.check())]
    assert not problems, "\n".join(problems)


def test_every_listed_test_exists() -> None:
    missing = []
    for m in mutation_check().load_mutants():
        for node in m.tests:
            path, _, name = node.partition("::")
            file = REPO / path
            if not file.is_file():
                missing.append(f"{m.id}: {path} does not exist")
            elif name and not re.search(rf"^def {re.escape(name)}\(", file.read_text(), re.M):
                missing.append(f"{m.id}: no test {name} in {path}")
    assert not missing, "\n".join(missing)
