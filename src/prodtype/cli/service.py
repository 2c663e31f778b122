"""Service commands: ``serve``, ``run`` (train if needed, migrate, first admin, serve) and ``users …``.

``prodtype.cli`` calls :func:`register` to add them to the main Typer app.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from prodtype.cli.errors import exit_on
from prodtype.config import Settings, get_settings
from prodtype.serving.errors import ServiceError

if TYPE_CHECKING:  # the database and model modules load when a command runs, not for ``prodtype --help``
    from sqlalchemy.orm import Session

console = Console(soft_wrap=True)  # no hard line breaks in logs (paths, URLs)
err_console = Console(stderr=True, soft_wrap=True)


class RoleChoice(enum.StrEnum):
    customer = "customer"
    reviewer = "reviewer"
    admin = "admin"


HostOpt = Annotated[
    str | None, typer.Option(help="Interface to listen on [default: PRODTYPE_HOST or 127.0.0.1]")
]
PortOpt = Annotated[int | None, typer.Option(help="Port [default: PRODTYPE_PORT or 8000]")]
WorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="Worker processes [default: PRODTYPE_WORKERS or 1]")
]


@contextmanager
def _database(settings: Settings) -> Iterator[Session]:
    """A session on the configured database, migrated to the latest schema first."""
    from prodtype.db import migrate
    from prodtype.db.engine import make_engine, make_sessionmaker, session_scope

    engine = make_engine(settings.resolved_database_url)
    try:
        migrate.upgrade(engine)
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _service_errors() -> AbstractContextManager[None]:
    return exit_on((ServiceError,), 1)


def _serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> None:
    import uvicorn

    from prodtype.db import migrate
    from prodtype.db.engine import make_engine
    from prodtype.serving.multiproc import multiprocess_dir

    workers = workers or settings.workers
    # Done once here rather than in each worker, where they would race: the schema and the dev JWT secret.
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    settings.jwt_secret_value()
    _check_image_store(settings)
    if workers > 1:
        os.environ["PRODTYPE_MIGRATE_ON_START"] = "false"
        # each worker loads the model; unless told otherwise, they share the CPUs rather than each
        # running onnxruntime on all of them
        os.environ.setdefault("PRODTYPE_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))

    with multiprocess_dir() if workers > 1 else nullcontext():  # one set of metrics for all workers
        uvicorn.run(
            "prodtype.app:app_from_env",
            factory=True,
            host=host or settings.host,
            port=port if port is not None else settings.port,
            workers=workers,
            proxy_headers=True,
            # a worker answers the supervisor's pings from a thread, which waits for the GIL while the
            # worker imports the model libraries: on a loaded 2-core machine that took over uvicorn's 5 s,
            # and the supervisor killed and restarted workers in a loop
            timeout_worker_healthcheck=60,
        )


def _check_image_store(settings: Settings) -> None:
    """Stop with a clear message when the configured object store cannot be used (bucket, keys, endpoint)."""
    if settings.image_store:
        from prodtype.serving.storage import open_image_store

        with exit_on((ServiceError,), 2):
            open_image_store(settings).check()


def serve(host: HostOpt = None, port: PortOpt = None, workers: WorkersOpt = None) -> None:
    """Serve the API (docs at /docs); migrations are applied on start."""
    _serve(get_settings(), host, port, workers)


def _first_champion(settings: Settings) -> None:
    """The registry's champion, or a first model registered as version 1 and made the champion (trained on
    PRODTYPE_DATA_DIR, or a bundle left under ``storage/models`` by an earlier prodtype)."""
    from prodtype.loop.first_model import ensure_champion
    from prodtype.loop.registry import RegistryError
    from prodtype.loop.retrain import LoopContext
    from prodtype.loop.retrain_jobs import retrain_lock
    from prodtype.serving.model_holder import find_model

    legacy = find_model(settings)
    if legacy is not None and settings.data_dir is None:
        # nothing to evaluate it on, so it cannot be registered: served as configured, as before
        console.print(f"Model: {legacy} (not registered: set PRODTYPE_DATA_DIR to register it)")
        return
    ctx = LoopContext.from_settings(settings)
    with exit_on((ServiceError, RegistryError), 2), retrain_lock(settings, "prodtype run: first model"):
        first = ensure_champion(ctx, legacy_bundle=legacy, say=console.print)
    name = ctx.registry.model_name
    if not first.created:
        console.print(f"Model: {name} version {first.version}, the champion in the registry")
        return
    how = "trained" if first.trained else f"registered from {first.adopted_from}"
    console.print(
        f"Model {how} as [bold]{name} version {first.version}[/bold], the champion (weighted F1 "
        f"{first.eval_weighted_f1:.4f} on the evaluation set; run folder {first.run_dir})"
    )


def run(host: HostOpt = None, port: PortOpt = None, workers: WorkersOpt = None) -> None:
    """Everything `make run` needs: a model (the registry's champion, trained first if there is none), the
    database, the first admin, the server."""
    from prodtype.db.engine import describe_url
    from prodtype.serving import users

    settings = get_settings()
    _check_image_store(settings)  # before a first model is trained, not after
    if settings.model_path is not None:
        console.print(f"Model: {settings.model_path} (PRODTYPE_MODEL_PATH)")
    else:
        _first_champion(settings)
    console.print(f"Database: {describe_url(settings.resolved_database_url)}")
    with _service_errors(), _database(settings) as session:
        password = settings.admin_password.get_secret_value() if settings.admin_password else None
        created = users.ensure_admin(session, settings.admin_username, password)
    if created is not None and created.password is not None:
        console.print(
            f"Created the admin [bold]{created.username}[/bold]. Its password, shown only this once "
            "(only its hash is stored; set PRODTYPE_ADMIN_PASSWORD before the first start to choose it):"
        )
        typer.echo(f"    {created.password}")  # plain, on its own line: never wrapped or styled
    elif created is not None:
        console.print(f"Created the admin [bold]{created.username}[/bold] from PRODTYPE_ADMIN_PASSWORD")
    _serve(settings, host, port, workers)


users_app = typer.Typer(no_args_is_help=True, help="Manage user accounts.")


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[RoleChoice, typer.Option(help="customer, reviewer or admin")] = RoleChoice.customer,
    password: Annotated[
        str,
        typer.Option(prompt=True, confirmation_prompt=True, hide_input=True, envvar="PRODTYPE_NEW_PASSWORD"),
    ] = "",
) -> None:
    """Create an account (the password is asked for, or read from PRODTYPE_NEW_PASSWORD)."""
    from prodtype.db.tables import Role
    from prodtype.serving import users

    with _service_errors(), _database(get_settings()) as session:
        user = users.create_user(session, username, password, Role(role.value))
        console.print(f"created {user.username} ({user.role})")


@users_app.command("list")
def users_list() -> None:
    """List the accounts."""
    from prodtype.serving import users

    with _service_errors(), _database(get_settings()) as session:
        rows, _ = users.list_users(session, limit=10_000)
        table = Table("username", "role", "disabled", "created")
        for u in rows:
            table.add_row(
                u.username, u.role, "yes" if u.disabled else "", u.created_at.isoformat(" ", "seconds")
            )
        console.print(table)


@users_app.command("set-role")
def users_set_role(username: str, role: RoleChoice) -> None:
    """Change an account's role."""
    from prodtype.db.tables import Role
    from prodtype.serving import users

    with _service_errors(), _database(get_settings()) as session:
        user = users.update_user(session, username, None, role=Role(role.value))
        console.print(f"{user.username} is now {user.role}")


@users_app.command("disable")
def users_disable(
    username: str, enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead")] = False
) -> None:
    """Disable an account (its tokens stop working at once), or enable it with --enable."""
    from prodtype.serving import users

    with _service_errors(), _database(get_settings()) as session:
        user = users.update_user(session, username, None, disabled=not enable)
        console.print(f"{user.username} is {'disabled' if user.disabled else 'enabled'}")


@users_app.command("logout")
def users_logout(username: str) -> None:
    """Log an account out everywhere: every token issued to it so far (API and web page) stops working."""
    from prodtype.serving import users

    with _service_errors(), _database(get_settings()) as session:
        user = users.revoke_tokens(session, username, None, why="logged out from the command line")
        console.print(f"{user.username} is logged out everywhere")


def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Remove orphan and temporary image files")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Check the database and the image store (after a crash, say): integrity, schema, orphan image files,
    predictions whose file is missing. Exits 1 while a problem remains."""
    import json

    from prodtype.db.engine import make_engine, make_sessionmaker, session_scope
    from prodtype.serving.doctor import SHOWN, examine
    from prodtype.serving.storage import open_image_store

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        with exit_on((ServiceError,), 2), session_scope(make_sessionmaker(engine)) as session:
            report = examine(engine, session, open_image_store(settings), fix=fix)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(f"database      {report.database}")
        console.print(f"integrity     {report.integrity}")
        console.print(f"schema        {report.schema_revision} (expected {report.schema_head})")
        console.print(
            f"images        {report.image_files} file(s) in {report.images_dir}, "
            f"{report.referenced_images} referenced"
        )
        for digest in report.orphan_files[:SHOWN]:
            state = "removed" if digest in report.removed_files else "orphan"
            console.print(f"  {state}: {digest}")
        for name in report.temporary_files[:SHOWN]:
            state = "removed" if name in report.removed_files else "temporary file"
            console.print(f"  {state}: {name}")
        for problem in report.problems:
            err_console.print(f"[red]problem:[/red] {problem}")
        if report.healthy:
            removed = f" ({len(report.removed_files)} file(s) removed)" if fix else ""
            console.print(f"[green]healthy[/green]{removed}")
        elif report.orphan_files and not fix:
            err_console.print("run `prodtype doctor --fix` to remove orphan and temporary files")
    if not report.healthy:
        raise typer.Exit(1)


bulk_jobs_app = typer.Typer(no_args_is_help=True, help="Manage bulk classification jobs.")


@bulk_jobs_app.command("clean")
def bulk_jobs_clean(
    keep_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Keep jobs finished in the last N days; 0 keeps all [default: PRODTYPE_BULK_JOB_KEEP_DAYS]",
        ),
    ] = None,
) -> None:
    """Delete bulk jobs finished more than N days ago (their rows and result; the predictions they made
    stay) and leftover files under PRODTYPE_STORAGE_DIR/bulk. The server also does it when it starts and
    once a day."""
    from prodtype.serving.bulk_jobs import clean_old_jobs

    settings = get_settings()
    with _service_errors(), _database(settings) as session:
        result = clean_old_jobs(session, settings, keep_days=keep_days)
    console.print(result.describe())


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("run")(run)
    app.command("doctor")(doctor)
    app.add_typer(users_app, name="users")
    app.add_typer(bulk_jobs_app, name="bulk-jobs")
