"""The model being served, swappable while requests run.

A request takes the current predictor once with :meth:`ModelHolder.get` and uses it to the end, so a
:meth:`ModelHolder.swap` in the middle never mixes two models within one prediction.
"""

from __future__ import annotations

import threading
from pathlib import Path

from prodtype.config import Settings
from prodtype.ml.predictor import Predictor
from prodtype.serving.errors import ModelUnavailableError

BUNDLE_MANIFEST = "manifest.json"
NO_MODEL = (
    "no model is loaded: set PRODTYPE_MODEL_PATH to a model bundle, or run `prodtype run` "
    "to train one on the data in PRODTYPE_DATA_DIR"
)


class ModelHolder:
    def __init__(self, predictor: Predictor | None = None) -> None:
        self._lock = threading.Lock()
        self._predictor = predictor

    def get(self) -> Predictor:
        with self._lock:
            predictor = self._predictor
        if predictor is None:
            raise ModelUnavailableError(NO_MODEL)
        return predictor

    def swap(self, new: Predictor | None) -> Predictor | None:
        """Install ``new`` and return the previous predictor (None if there was none)."""
        with self._lock:
            old, self._predictor = self._predictor, new
        return old

    @property
    def loaded(self) -> bool:
        with self._lock:
            return self._predictor is not None

    @property
    def version(self) -> str | None:
        with self._lock:
            return self._predictor.version if self._predictor is not None else None


def find_model(settings: Settings) -> Path | None:
    """The bundle to serve: PRODTYPE_MODEL_PATH, else the newest bundle under ``storage_dir/models``."""
    if settings.model_path is not None:
        return settings.model_path
    if not settings.models_dir.is_dir():
        return None
    bundles = [p for p in settings.models_dir.iterdir() if (p / BUNDLE_MANIFEST).is_file()]
    return max(bundles, key=lambda p: (p / BUNDLE_MANIFEST).stat().st_mtime, default=None)


def load_model(
    path: Path, *, threads: int | None = None, max_pixels: int | None = None, max_side: int | None = None
) -> Predictor:
    """Load and verify a bundle (BundleError when it is missing or corrupt)."""
    from prodtype.ml.bundle import load_bundle  # heavy (onnxruntime); only when a model is served

    return load_bundle(path, threads=threads, max_pixels=max_pixels, max_side=max_side)


def load_warm(path: Path, settings: Settings) -> Predictor:
    """A bundle loaded with the settings' limits and warmed up, so that the first request is not slow."""
    predictor = load_model(
        path, threads=settings.threads, max_pixels=settings.max_image_pixels, max_side=settings.max_image_side
    )
    warm_up = getattr(predictor, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return predictor


def load_shadow(path: Path, settings: Settings) -> Predictor:
    """A bundle for shadow scoring: one thread, so that it leaves the cores to the model that answers."""
    predictor = load_model(
        path, threads=1, max_pixels=settings.max_image_pixels, max_side=settings.max_image_side
    )
    warm_up = getattr(predictor, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return predictor
