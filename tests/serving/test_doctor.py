"""``prodtype doctor``: orphan image files (a write whose insert never committed), leftovers of interrupted
writes, predictions whose file is missing; reported, and with --fix the files removed (never a record)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from prodtype.cli import service as cli_service
from prodtype.config import Settings, get_settings
from prodtype.serving.doctor import examine
from prodtype.serving.storage import ImageStore, LocalImageStore, open_image_store, sha256_hex
from service_support.images import photo
from service_support.object_store import s3_endpoint, s3_env, s3_settings, s3_url  # noqa: F401 (fixtures)
from service_support.records import add_prediction, user


@pytest.fixture
def store(settings: Settings) -> ImageStore:
    return LocalImageStore(settings.images_dir)


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("PRODTYPE_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("PRODTYPE_STORAGE_DIR", str(settings.storage_dir))
    get_settings.cache_clear()
    app = typer.Typer()
    cli_service.register(app)
    yield app
    get_settings.cache_clear()


def damage(session: Session, store: ImageStore) -> dict[str, object]:
    """A store after a crash: a referenced file, an orphan, a half-written temporary file, and a
    prediction whose file was lost."""
    carl = user(session, "carl")
    kept = add_prediction(session, carl, image=photo(0), store=store)
    lost = add_prediction(session, carl, image=photo(1), store=store)
    store.path_for(sha256_hex(photo(1))).unlink()
    orphan = store.put(photo(2))  # written, then the insert never committed
    partial = store.path_for(orphan).parent / ".tmp-abc123"
    partial.write_bytes(photo(3)[:100])
    return {"kept": kept.image_sha256, "lost": lost.id, "orphan": orphan, "partial": partial}


def test_orphans_and_missing_files_are_reported_then_fixed(
    engine: Engine, session: Session, store: ImageStore
) -> None:
    found = damage(session, store)
    report = examine(engine, session, store)
    assert report.integrity == "ok" and report.schema_revision == report.schema_head
    assert report.orphan_files == [found["orphan"]] and report.missing_images == [found["lost"]]
    assert report.temporary_files == [f"{str(found['orphan'])[:2]}/.tmp-abc123"]
    assert report.image_files == 2 and report.referenced_images == 1 and not report.healthy
    assert store.exists(str(found["orphan"]))  # reporting changes nothing

    fixed = examine(engine, session, store, fix=True)
    assert sorted(fixed.removed_files) == sorted([str(found["orphan"]), fixed.temporary_files[0]])
    assert not store.exists(str(found["orphan"])) and not Path(str(found["partial"])).exists()
    assert store.exists(str(found["kept"]))  # a referenced file is never touched
    assert [p for p in fixed.problems if "orphan" in p or "temporary" in p] == []
    assert fixed.missing_images == [found["lost"]]  # a record is never removed: a person decides


def test_the_command_line_reports_fixes_and_exits_non_zero_while_a_problem_remains(
    cli: typer.Typer, session: Session, store: ImageStore
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["doctor"])
    assert result.exit_code == 0 and "healthy" in result.output, result.output
    found = damage(session, store)
    result = runner.invoke(cli, ["doctor"])
    assert result.exit_code == 1
    assert f"orphan: {found['orphan']}" in result.output and "doctor --fix" in result.output
    assert f"whose image file is missing: {found['lost']}" in result.output
    result = runner.invoke(cli, ["doctor", "--fix", "--json"])
    report = json.loads(result.output)
    assert result.exit_code == 1  # the missing file remains
    assert report["removed_files_count"] == 2 and report["missing_images"] == [found["lost"]]
    assert not store.exists(str(found["orphan"]))


def test_the_doctor_checks_and_fixes_the_object_store(
    cli: typer.Typer,
    session: Session,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> None:
    for name, value in s3_env(s3_endpoint, s3_url).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    store = open_image_store(settings.model_copy(update=s3_settings(s3_endpoint, s3_url)))
    kept = add_prediction(session, user(session, "carl"), image=photo(1), store=store).image_sha256
    orphan = store.put(photo(2))
    runner = CliRunner()
    result = runner.invoke(cli, ["doctor", "--json"])
    report = json.loads(result.output)
    assert result.exit_code == 1 and report["orphan_files"] == [orphan]
    assert report["images_dir"] == f"{s3_url}/images" and report["image_files"] == 2
    result = runner.invoke(cli, ["doctor", "--fix"])
    assert result.exit_code == 0 and "healthy" in result.output, result.output
    assert not store.exists(orphan) and kept is not None and store.exists(kept)


@pytest.mark.parametrize("command", ["doctor", "serve"])
def test_a_bucket_that_does_not_exist_stops_doctor_and_serve_with_a_message(
    cli: typer.Typer,
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    s3_endpoint: str,  # noqa: F811
) -> None:
    for name, value in s3_env(s3_endpoint, "s3://no-such-bucket/prodtype").items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, [command])
    assert result.exit_code == 2, result.output
    assert "s3://no-such-bucket/prodtype" in result.output
    assert "bucket 'no-such-bucket' does not exist" in result.output
