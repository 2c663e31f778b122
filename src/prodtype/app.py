"""The application factory: ``create_app(settings)`` assembles the API, the web pages, /metrics and the
learning loop around one set of settings, database, image store and model. Only this module imports both
:mod:`prodtype.api` and :mod:`prodtype.web`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

import prodtype
from prodtype.api.errors import register_exception_handlers
from prodtype.api.guards import AuthenticateFirst, NoSniff
from prodtype.api.limits import RequestSizeLimit
from prodtype.api.openapi import install_openapi
from prodtype.api.routes import (
    audit,
    auth,
    bulk,
    categories,
    health,
    jobs,
    model_cards,
    model_shadow,
    model_versions,
    predictions,
    retrain,
    users,
)
from prodtype.api.schemas import API_PREFIX
from prodtype.catalog import load_catalog
from prodtype.config import Settings, get_settings
from prodtype.db import migrate
from prodtype.db.engine import describe_url, make_engine, make_sessionmaker
from prodtype.loop.alert_metrics import install_alert_metrics
from prodtype.loop.champion import ChampionFollower
from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.registry import Registry
from prodtype.loop.shadow import ShadowFollower, ShadowLedger
from prodtype.loop.shadow_metrics import install_shadow_metrics
from prodtype.serving.batching import MicroBatcher
from prodtype.serving.bulk_jobs import BulkWorker
from prodtype.serving.metrics import install_metrics, instrument
from prodtype.serving.model_holder import ModelHolder, find_model, load_shadow, load_warm
from prodtype.serving.shadow import QuietGate, ShadowScorer
from prodtype.serving.storage import open_image_store
from prodtype.serving.throttle import LoginThrottle, make_storage
from prodtype.web.guards import LoginBeforeForm
from prodtype.web.routes import install_web

log = logging.getLogger(__name__)

DESCRIPTION = """Product type classification for the Rakuten France catalogue.

Log in at `POST /api/v1/auth/token` (form fields `username`, `password`) and send the token as
`Authorization: Bearer <token>`. Customers submit products and see their own predictions; reviewers work
through the review queue (`GET /api/v1/predictions?status=pending`); admins manage users as well.
"""


def _load_configured_model(settings: Settings, holder: ModelHolder) -> None:
    path = find_model(settings)
    if path is None:
        log.info("no configured model (PRODTYPE_MODEL_PATH unset, none under %s)", settings.models_dir)
        return
    holder.swap(load_warm(path, settings))
    log.info("serving model %s from %s", holder.version, path)


def create_app(settings: Settings | None = None, *, model_holder: ModelHolder | None = None) -> FastAPI:
    """The API. Without ``model_holder`` the configured bundle is loaded on start-up; a holder passed in
    (e.g. one shared by tests, or one that follows a registry) is used as it is."""
    settings = settings or get_settings()
    holder = model_holder or ModelHolder()
    engine = make_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(migrate.upgrade, engine)
        await run_in_threadpool(app.state.store.check)  # a wrong bucket, key or endpoint stops the start
        if model_holder is None and not holder.loaded:
            await run_in_threadpool(_load_configured_model, settings, holder)
        log.info("database %s", describe_url(settings.resolved_database_url))
        app.state.bulk_worker.start()
        app.state.shadow.start()
        try:
            yield
        finally:
            app.state.bulk_worker.stop()
            app.state.shadow.stop()
            app.state.batcher.stop()
            engine.dispose()

    app = FastAPI(
        title="prodtype",
        version=prodtype.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    jwt_secret = settings.jwt_secret_value()
    # Outermost last: the size limit, then authentication (API bearer, pages' session), run before any body
    # is read.
    app.add_middleware(AuthenticateFirst, jwt_secret=jwt_secret)
    app.add_middleware(LoginBeforeForm, jwt_secret=jwt_secret)
    app.add_middleware(
        RequestSizeLimit,
        max_body_bytes=settings.max_request_bytes,
        upload_limit_bytes=settings.upload_limit_bytes,
        per_path={
            f"{API_PREFIX}/predictions/batch": settings.bulk_max_request_bytes,
            f"{API_PREFIX}/jobs/bulk": settings.bulk_job_max_request_bytes,
            "/bulk": settings.bulk_job_max_request_bytes,
        },
    )
    app.add_middleware(NoSniff)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.store = open_image_store(settings)
    app.state.catalog = load_catalog(settings.categories_file)
    app.state.model_holder = holder
    app.state.batcher = MicroBatcher(settings.batch_max_size, settings.batch_max_wait_ms / 1000)
    app.state.jwt_secret = jwt_secret
    # Bulk jobs run in this process, with the served model (whichever is current when a chunk starts).
    app.state.bulk_worker = BulkWorker(
        app.state.sessions, settings, app.state.store, lambda: instrument(app, holder.get())
    )
    # The model in shadow (none until one is put there): scored off the request path, see serving/shadow.py.
    # It waits for moments when the served model computes no answer (serving/deps.py get_model holds the
    # gate), so that it never competes with an answer for the CPU.
    app.state.shadow_gate = QuietGate()
    app.state.shadow = ShadowScorer(
        app.state.sessions, settings.loop.shadow_queue_size, gate=app.state.shadow_gate
    )
    app.state.bulk_worker.shadow = app.state.shadow
    app.state.login_throttle = LoginThrottle(
        make_storage(settings.rate_limit_storage, engine),
        settings.login_limit_per_username,
        settings.login_limit_per_address,
    )

    api = APIRouter(prefix=API_PREFIX)
    for module in (auth, predictions, bulk, jobs, categories, health, users, audit, model_versions, retrain):
        api.include_router(module.router)
    api.include_router(model_cards.router)  # /models/{version}/card, beside model_versions' /models
    api.include_router(model_shadow.router)  # /models/shadow, /models/{version}/shadow
    app.include_router(api)
    metrics = install_metrics(app)  # /metrics, and counting requests and predictions
    app.state.shadow.on_outcome = lambda outcome: metrics.shadow_products.labels(outcome).inc()
    install_web(app)  # the pages at /
    install_loop(app)  # the registry, and following the champion alias
    install_alert_metrics(app)  # live accuracy, class-mix drift, backlog, retrain outcomes for alerting
    install_shadow_metrics(app)  # both models' live accuracy on the same reviewed products
    register_exception_handlers(app)
    install_openapi(app)  # every status code each route answers, with the real error body
    return app


def install_loop(app: FastAPI) -> None:
    """Keep a registry on ``app.state`` and, while the app runs, follow the champion alias.

    The follower is created when the app starts, with the loop's settings of ``app.state.settings``;
    its first look at the registry happens before the app serves, so a service started after a promotion
    answers with the champion from its first request.
    """
    app.state.champion_follower = None
    app.state.shadow_follower = None
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            settings: Settings = a.state.settings
            loop_settings = settings.loop
            registry = Registry.from_settings(settings)
            a.state.registry = registry
            follower = ChampionFollower(
                a.state.model_holder,
                registry,
                loop_settings,
                known_codes=list(a.state.catalog.codes),
                # the settings' thread count and pixel limit, warmed up before it takes requests
                loader=lambda path: load_warm(path, settings),
                # only what prodtype recorded is served, never an alias moved in MLflow by someone else
                recorded=lambda: PromotionLedger(a.state.sessions).champion(registry.model_name),
            )
            a.state.champion_follower = follower
            shadow = ShadowFollower(
                a.state.shadow,
                registry,
                ShadowLedger(a.state.sessions),
                # one thread: the shadow must leave the cores to the model that answers
                loader=lambda path: load_shadow(path, settings),
                poll_seconds=loop_settings.champion_poll_seconds,
                known_codes=list(a.state.catalog.codes),
            )
            a.state.shadow_follower = shadow
            # The champion is what is served (PRODTYPE_MODEL_PATH aside); not following it afterwards
            # still serves it from the start.
            first_look = loop_settings.follow_champion or not a.state.model_holder.loaded
            if first_look and registry.store_exists():
                try:
                    await run_in_threadpool(follower.check_now)
                except Exception as exc:  # the registry must not keep the service from starting
                    log.warning("could not read the champion from %s: %s", registry, exc)
            # The recorded shadow version is honoured from the start, followed or not afterwards.
            if registry.store_exists():
                try:
                    await run_in_threadpool(shadow.check_now)
                except Exception as exc:
                    log.warning("could not read the shadow version: %s", exc)
            if loop_settings.follow_champion:
                follower.start()
            shadow.start()  # the shadow record is prodtype's own: followed even with a fixed champion
            try:
                yield state
            finally:
                follower.stop()
                shadow.stop()

    app.router.lifespan_context = lifespan


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory prodtype.app:app_from_env``: settings from the environment."""
    return create_app(get_settings())
