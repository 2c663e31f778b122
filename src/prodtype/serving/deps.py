"""What the app holds, as FastAPI dependencies shared by the API routes and the web pages: the settings, a
database session, the image store, the catalogue and the served model.

Everything lives on ``app.state`` (set by :func:`prodtype.app.create_app`); tests can swap any of these with
``app.dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from prodtype.catalog import Catalog
from prodtype.config import Settings
from prodtype.db.engine import session_scope
from prodtype.ml.predictor import Predictor
from prodtype.serving.batching import BatchedPredictor
from prodtype.serving.metrics import instrument
from prodtype.serving.model_holder import ModelHolder
from prodtype.serving.shadow import Gated, QuietGate, ShadowScorer
from prodtype.serving.storage import ImageStore


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_store(request: Request) -> ImageStore:
    store: ImageStore = request.app.state.store
    return store


async def get_model(request: Request) -> Predictor:
    """The served model: single predictions are batched with concurrent ones, counted and timed for
    /metrics, and hold the shadow scorer's gate while they compute (see serving/shadow.py)."""
    holder: ModelHolder = request.app.state.model_holder
    model = instrument(request.app, BatchedPredictor(holder.get(), request.app.state.batcher))
    gate: QuietGate | None = getattr(request.app.state, "shadow_gate", None)
    return model if gate is None else Gated(model, gate)


async def get_shadow(request: Request) -> ShadowScorer | None:
    """The queue of the model in shadow (None in an app built without one)."""
    shadow: ShadowScorer | None = getattr(request.app.state, "shadow", None)
    return shadow


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
StoreDep = Annotated[ImageStore, Depends(get_store)]
ModelDep = Annotated[Predictor, Depends(get_model)]
ShadowDep = Annotated[ShadowScorer | None, Depends(get_shadow)]
