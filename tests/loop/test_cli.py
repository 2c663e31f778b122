"""The learning-loop commands, in process (the end-to-end scenario runs them as real processes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from loop.records import review, submit
from prodtype.cli import loop as cli_loop
from prodtype.config import Settings, get_settings
from prodtype.loop.registry import Registry
from service_support.databases import both_databases


@pytest.fixture
def run(settings: Settings, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("PRODTYPE_STORAGE_DIR", str(settings.storage_dir))
    monkeypatch.setenv("PRODTYPE_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("PRODTYPE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PRODTYPE_RETRAIN_MIN_NEW_REVIEWS", "2")
    get_settings.cache_clear()
    app = typer.Typer()
    cli_loop.register(app)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    yield invoke
    get_settings.cache_clear()


@both_databases
def test_export_feedback(run, sessions: sessionmaker[Session], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        review(s, submit(s, "Lampe de chevet", 2060), "accept")
        review(s, submit(s, "Rebut", 10), "reject")
    code, out, err = run("export-feedback", "--out", str(tmp_path / "fb"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"] == 1 and summary["rejected_excluded"] == 1
    assert (tmp_path / "fb" / "X_feedback.csv").is_file() and "1 product(s) written" in err


@both_databases
def test_check_step_exit_code_and_figures(run, sessions: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run("retrain", "--step", "check", "--not-needed-exit-code", "99")
    assert code == 99 and json.loads(out)["should_retrain"] is False
    assert "no retrain needed: 0 new reviewed products (threshold 2)" in err
    with sessions() as s:
        for i in range(2):
            review(s, submit(s, f"Produit {i}", 10), "accept")
    code, out, _ = run("retrain", "--step", "check", "--not-needed-exit-code", "99")
    assert code == 0 and json.loads(out)["new_reviewed_products"] == 2


def test_steps_need_a_run_name_and_their_inputs(run) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("retrain", "--step", "train")
    assert code == 2 and "--run-name" in err
    code, _, err = run("retrain", "--step", "register", "--run-name", "r1")
    assert code == 1 and "needs the output of step 'train'" in err


def test_models_commands_on_an_empty_registry(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("models", "list", "--json")
    assert code == 0 and json.loads(out)["count"] == 0
    code, _, err = run("models", "rollback")
    assert code == 1 and "no champion to roll back from" in err
    code, _, err = run("models", "promote", "4")
    assert code == 1 and "no version 4" in err


@both_databases
def test_monitor(run, sessions: sessionmaker[Session], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        review(s, submit(s, "Lampe", 2060), "accept", 2582)
        submit(s, "Jeu PS4", 2462)
    code, out, err = run("monitor", "--out", str(tmp_path))
    assert code == 0, err
    report = json.loads(out)
    assert report["predictions"] == 2 and report["awaiting_review"] == 1
    assert report["live_accuracy"] == 0.0 and report["predicted_counts"]["2462"] == 1
    assert report["class_shift_tvd"] > 0 and Path(report["plot"]).is_file()
