"""The service follows the registry's ``champion`` alias, switching models without a restart.

A background thread looks at the alias every few seconds (and at once when woken after a promotion or a
rollback made through this API). When it points to another version, the bundle is loaded and checked
(it loads; its classes are product type codes; a text-only and an image prediction come out well formed)
before :meth:`ModelHolder.swap` installs it atomically. Requests that already took the old predictor
finish with it. A version that fails its checks is refused, remembered with the reason, and the old model
keeps serving.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from prodtype.config import LoopSettings
from prodtype.loop.ledger import RecordedChampion, manifest_digest
from prodtype.loop.polling import Poller
from prodtype.loop.registry import CHAMPION, Registry
from prodtype.ml.predictor import Prediction, Predictor, ProductInput
from prodtype.serving.model_holder import ModelHolder, load_model

log = logging.getLogger(__name__)


class RegisteredPredictor:
    """A registry version being served: predictions record ``<model>/v<N>`` as the version that made them."""

    def __init__(self, inner: Predictor, registry_version: int, model_name: str = "prodtype") -> None:
        self.inner = inner
        self.registry_version = registry_version
        self._version = f"{model_name}/v{registry_version}"

    @property
    def version(self) -> str:
        return self._version

    @property
    def bundle_version(self) -> str:
        return self.inner.version

    @property
    def classes(self) -> list[int]:
        return self.inner.classes

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        return self.inner.predict(designation, description, image, k)

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        return self.inner.predict_many(products, k)

    def __getattr__(self, name: str) -> Any:  # manifest, etc.
        return getattr(self.inner, name)


def _test_image() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def smoke_check(predictor: Predictor, known_codes: Collection[int] | None = None) -> None:
    """Raise ValueError unless the predictor answers sensibly, with and without an image."""
    classes = list(predictor.classes)
    if not classes:
        raise ValueError("the model has no classes")
    if known_codes is not None:
        unknown = sorted(set(classes) - set(known_codes))
        if unknown:
            raise ValueError(f"the model predicts codes that are not product types: {unknown[:5]}")
    for image in (None, _test_image()):
        pred = predictor.predict("Lot de 3 stylos bille bleu", "encre bleue, pointe moyenne", image)
        if pred.prdtypecode not in classes:
            raise ValueError(f"smoke prediction {pred.prdtypecode} is not one of the model's classes")
        if not (math.isfinite(pred.confidence) and 0.0 <= pred.confidence <= 1.0):
            raise ValueError(f"smoke prediction confidence {pred.confidence!r} is not a probability")
        if not pred.top_k:
            raise ValueError("smoke prediction has no top-k candidates")


def load_checked(path: Path, known_codes: Collection[int] | None = None) -> Predictor:
    predictor = load_model(path)
    smoke_check(predictor, known_codes)
    return predictor


class ChampionFollower(Poller):
    name = "champion-follower"
    following = "the champion"

    """Follows the champion. With ``recorded`` (the service always passes it: prodtype's own record of
    its promotions, see :mod:`prodtype.loop.ledger`), the version served is the one prodtype
    recorded, and only if its bundle's manifest is the one recorded; an alias that points elsewhere (moved
    in MLflow by someone else) is reported in :meth:`status` and the logs, and ignored. Without it, the
    alias is followed as it is (for tools that only have a registry)."""

    def __init__(
        self,
        holder: ModelHolder,
        registry: Registry,
        loop: LoopSettings,
        *,
        known_codes: Collection[int] | None = None,
        loader: Callable[[Path], Predictor] = load_model,
        recorded: Callable[[], RecordedChampion | None] | None = None,
    ) -> None:
        super().__init__()
        self.holder = holder
        self.registry = registry
        self.loop = loop
        self.known_codes = known_codes
        self.loader = loader
        self.recorded = recorded
        self.serving_version: int | None = None
        self.refused: dict[int, str] = {}
        self.untrusted_alias: dict[str, Any] | None = None
        self.last_check: float | None = None
        self._check_lock = threading.Lock()

    def check_now(self) -> bool:
        """Follow the alias once; True when another model was installed."""
        with self._check_lock:
            self.last_check = time.time()
            alias = self.registry.alias_version(CHAMPION)
            record = self.recorded() if self.recorded is not None else None
            version = alias if self.recorded is None else (record.version if record else None)
            if self.recorded is not None:
                self._report_alias(alias, record)
            if version is None or version == self.serving_version or version in self.refused:
                return False
            try:
                path = self.registry.local_bundle(version)
                if record is not None and record.manifest_sha256 is not None:
                    found = manifest_digest(path)
                    if found != record.manifest_sha256:
                        raise ValueError(
                            f"its bundle changed in the registry since it was promoted (manifest sha256 "
                            f"{(found or 'missing')[:12]}…, recorded {record.manifest_sha256[:12]}…)"
                        )
                predictor = self.loader(path)
                smoke_check(predictor, self.known_codes)
            except Exception as exc:
                self.refused[version] = f"{type(exc).__name__}: {exc}"
                log.error("refused champion version %s (the current model keeps serving): %s", version, exc)
                return False
            old = self.holder.swap(RegisteredPredictor(predictor, version, self.registry.model_name))
            self.serving_version = version
            log.info(
                "now serving %s version %s (was %s)",
                self.registry.model_name,
                version,
                old.version if old is not None else "no model",
            )
            return True

    def _report_alias(self, alias: int | None, record: RecordedChampion | None) -> None:
        recorded = record.version if record is not None else None
        if alias == recorded:
            self.untrusted_alias = None
            return
        detail = (
            f"the registry's champion alias points to version {alias}, but the last promotion recorded by "
            f"prodtype chose {recorded if recorded is not None else 'no version'}: the alias is ignored "
            "(it was moved outside prodtype; promote through the API or `prodtype models promote` to serve "
            "a version)"
        )
        if self.untrusted_alias is None or self.untrusted_alias.get("alias") != alias:
            log.error("%s", detail)  # once per distinct alias, not at every poll
        self.untrusted_alias = {"alias": alias, "recorded": recorded, "detail": detail}

    def allow_retry(self, version: int) -> None:
        self.refused.pop(version, None)

    def interval(self) -> float:
        return self.loop.champion_poll_seconds

    def status(self) -> dict[str, Any]:
        refused = {str(k): v for k, v in self.refused.items()}
        untrusted = self.untrusted_alias
        if untrusted is not None and untrusted["alias"] is not None:
            refused.setdefault(str(untrusted["alias"]), untrusted["detail"])
        return {
            "following": self.running,
            "serving_version": self.serving_version,
            "refused": refused,
            "untrusted_alias": untrusted,
            "last_check": self.last_check,
            "last_error": self.last_error,
        }
