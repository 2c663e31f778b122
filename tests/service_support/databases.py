"""Real databases for tests: a SQLite file and a PostgreSQL database, fresh for every test.

Each backend migrates (and seeds with a few users) one template once per session; a test gets a copy of
it: a copied file for SQLite, ``CREATE DATABASE … TEMPLATE …`` for PostgreSQL (dropped afterwards).
PostgreSQL tests are skipped, with the reason shown, when the server cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from prodtype.config import Settings
from prodtype.db import migrate
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.db.tables import Role
from prodtype.serving import users

POSTGRES_URL = os.environ.get(
    "PRODTYPE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PASSWORD = "correct horse battery staple"
# Seeded in every template: one account per role, plus a second customer.
SEED_USERS = {
    "admin": Role.ADMIN,
    "rita": Role.REVIEWER,
    "carl": Role.CUSTOMER,
    "cora": Role.CUSTOMER,
}
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


# For folders whose ``backend`` fixture defaults to SQLite (tests/loop): this test runs on both databases.
both_databases = pytest.mark.parametrize("backend", BACKENDS, indirect=True)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@cache
def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        with psycopg.connect(_libpq(POSTGRES_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} is unreachable: {first_line}"
    return None


def seed(engine: Engine) -> None:
    with make_sessionmaker(engine)() as session:
        for name, role in SEED_USERS.items():
            users.create_user(session, name, PASSWORD, role)


@dataclass
class SqliteBackend:
    template: Path
    name: str = "sqlite"

    @classmethod
    def create(cls, folder: Path) -> SqliteBackend:
        path = folder / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate.upgrade(engine)
        seed(engine)
        engine.dispose()  # checkpoints the WAL into the main file
        return cls(path)

    def fresh(self, folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "prodtype.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    def blank(self, folder: Path) -> str:
        """An empty database (no tables) for tests of what happens on first start."""
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'blank.db'}"

    def drop(self, url: str) -> None:
        """Files live in the test's tmp_path."""

    def close(self) -> None:
        """Nothing to drop."""


@dataclass
class PostgresBackend:
    template: str
    name: str = "postgres"

    @staticmethod
    def _admin() -> psycopg.Connection:
        return psycopg.connect(_libpq(POSTGRES_URL), autocommit=True)

    @classmethod
    def create(cls) -> PostgresBackend:
        name = f"prodtype_tmpl_{uuid.uuid4().hex[:12]}"
        with cls._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        engine = make_engine(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
        migrate.upgrade(engine)
        seed(engine)
        engine.dispose()
        return cls(name)

    def fresh(self, folder: Path) -> str:
        return self._create(self.template)

    def blank(self, folder: Path) -> str:
        """An empty database (no tables) for tests of what happens on first start."""
        return self._create("template0")

    def _create(self, template: str) -> str:
        name = f"prodtype_test_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        assert name and name.startswith("prodtype_test_")
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.template))
            )


Backend = SqliteBackend | PostgresBackend


@pytest.fixture(scope="session")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> SqliteBackend:
    return SqliteBackend.create(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_backend() -> Iterator[PostgresBackend]:
    reason = postgres_unreachable()
    if reason:
        pytest.skip(reason)
    backend = PostgresBackend.create()
    yield backend
    backend.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test using it runs on SQLite and on PostgreSQL."""
    name = request.param
    fixture = "sqlite_backend" if name == "sqlite" else "postgres_backend"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
def database_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database with the seed users, dropped after the test."""
    url = backend.fresh(tmp_path / "db")
    yield url
    backend.drop(url)


@pytest.fixture
def blank_database_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """An empty database on the same backend, dropped after the test."""
    url = backend.blank(tmp_path / "blank")
    yield url
    backend.drop(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        storage_dir=tmp_path / "storage",
        database_url=database_url,
        jwt_secret="test-secret-" + "x" * 40,  # type: ignore[arg-type]
        model_path=None,
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as session:
        yield session
