"""The import direction of the package (README, "How the code is organised"):
config/catalog <- data <- ml <- serving <- loop <- api / web / cli <- app.

Every ``import`` and ``from … import`` in src/prodtype, at module level or inside a function, is read with
ast; a test names the module and the import that breaks the rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prodtype"

# part -> the parts it must never import
FORBIDDEN: dict[str, set[str]] = {
    "files": {"config", "catalog", "data", "ml", "db", "serving", "loop", "api", "web", "cli", "app"},
    "config": {"catalog", "data", "ml", "db", "serving", "loop", "api", "web", "cli", "app"},
    "catalog": {"data", "ml", "db", "serving", "loop", "api", "web", "cli", "app"},
    "data": {"ml", "db", "serving", "loop", "api", "web", "cli", "app"},
    "ml": {"db", "serving", "loop", "api", "web", "cli", "app"},
    "db": {"data", "ml", "serving", "loop", "api", "web", "cli", "app"},
    "serving": {"loop", "api", "web", "cli", "app"},
    "loop": {"api", "web", "cli", "app"},
    "api": {"web", "cli", "app"},
    "web": {"api", "cli", "app"},  # the admin pages call the loop, as the API does
    "cli": {"api", "web", "app"},
}


def _part(module: str) -> str | None:
    """'prodtype.serving.users' -> 'serving'; 'prodtype.config' -> 'config'."""
    names = module.split(".")
    if names[0] != "prodtype" or len(names) < 2:
        return None
    return names[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from prodtype import cli`` imports the part named after ``import``
            if node.module == "prodtype":
                found.extend((node.lineno, f"prodtype.{alias.name}") for alias in node.names)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _own_part(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def violations() -> list[str]:
    found = []
    for path in _modules():
        own = _own_part(path)
        for line, module in _imports(path):
            target = _part(module)
            if target is not None and target in FORBIDDEN.get(own, set()):
                found.append(f"{path.relative_to(SRC)}:{line} ({own}) imports {module} ({target})")
    return found


def test_imports_flow_one_way() -> None:
    assert violations() == []


def test_the_parts_are_where_the_rules_expect_them() -> None:
    """A rule about a part that does not exist would pass for nothing."""
    parts = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert set(FORBIDDEN) | {"app"} <= parts


def test_the_dag_runs_the_steps_of_the_loops_table() -> None:
    """The Airflow DAG (run in its own virtualenv, so it cannot import prodtype) has one task per step of
    prodtype.loop.retrain.RUN_STEPS, in the same order."""
    import re

    from prodtype.loop.retrain import STEPS

    dag = (SRC.parents[1] / "dags" / "prodtype_retrain.py").read_text()
    named = re.findall(r"retrain --step ([a-z]+)|_step\(\"([a-z]+)\"", dag)
    in_dag = list(dict.fromkeys(a or b for a, b in named))
    assert in_dag == list(STEPS)


@pytest.mark.parametrize(
    ("own", "source", "expected"),
    [
        ("api", "from prodtype.web.render import SECURITY_HEADERS\n", "web"),
        ("web", "def f():\n    import prodtype.api.deps\n", "api"),
        ("ml", "from prodtype import serving\n", "serving"),
    ],
)
def test_a_wrong_import_is_found(tmp_path: Path, own: str, source: str, expected: str) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    targets = {_part(module) for _, module in _imports(path)}
    assert expected in targets and expected in FORBIDDEN[own]


# boto3 (the object store's client) is imported only when PRODTYPE_IMAGE_STORE names a store.
HEAVY = ("onnxruntime", "mlflow", "boto3", "botocore")


# what ``prodtype --help`` needs none of either: the model's and the database's libraries (it took 11 s on a
# loaded 2-core machine when the command modules imported them, 1.4 s after)
MODEL_AND_DATABASE = ("numpy", "pandas", "scipy", "sklearn", "sqlalchemy")


@pytest.mark.parametrize(
    ("args", "heavy"), [(["--help"], HEAVY + MODEL_AND_DATABASE), (["users", "list"], HEAVY)]
)
def test_light_commands_import_neither_onnxruntime_nor_mlflow(
    tmp_path: Path, args: list[str], heavy: tuple[str, ...]
) -> None:
    """``prodtype --help`` and ``prodtype users list`` start in a blink: the heavy libraries are imported
    where a model is loaded or the registry is read, never on the way to a command that needs neither."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from prodtype.cli import app\n"
        f"sys.argv = ['prodtype', *{args!r}]\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    env = {
        **os.environ,
        "PRODTYPE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "PRODTYPE_STORAGE_DIR": str(tmp_path),
        "PYTHONPATH": str(SRC.parent),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]


def test_serving_imports_onnxruntime_only_to_load_a_model() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import prodtype.app, prodtype.serving.predictions, prodtype.serving.model_holder\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
