"""Scoring each new prediction with a second model (the one in shadow) off the request path.

The request that made the prediction only puts the product on a bounded queue (``put_nowait``: never a
wait); one background thread takes it from there, asks the shadow model, and records its answer in
``shadow_predictions`` beside the served model's. When the queue is full the product is dropped and
counted (:attr:`ShadowScorer.dropped`): a shadow that cannot keep up loses samples, it never slows the
answers. Which version runs in shadow is decided elsewhere (:mod:`prodtype.loop.shadow` installs it).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from prodtype.db.tables import ShadowPrediction
from prodtype.ml.predictor import Predictor

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256


@dataclass(frozen=True)
class ShadowTask:
    prediction_id: int
    designation: str
    description: str
    image: bytes | None


@dataclass(frozen=True)
class ShadowCounts:
    """This process's counts since it started (each worker process has its own queue)."""

    version: int | None
    queued: int
    submitted: int
    scored: int
    dropped: int
    failed: int
    queue_size: int


class ShadowScorer:
    """A bounded queue and one thread that scores what is put on it with the installed shadow model."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        maxsize: int = DEFAULT_QUEUE_SIZE,
        on_outcome: Callable[[str], object] | None = None,
    ) -> None:
        self.sessions = sessions
        # told "scored", "dropped" or "failed" for each product (the /metrics counter)
        self.on_outcome = on_outcome
        self.maxsize = maxsize
        self._queue: queue.Queue[ShadowTask | None] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._model: Predictor | None = None
        self._version: int | None = None
        self.submitted = self.scored = self.dropped = self.failed = 0
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._thread: threading.Thread | None = None

    # -- the shadow model -------------------------------------------------------------------------------

    def install(self, model: Predictor | None, version: int | None) -> None:
        """Score with ``model`` (registry ``version``) from now on; None stops shadow scoring."""
        with self._lock:
            self._model, self._version = (model, version) if model is not None else (None, None)

    @property
    def version(self) -> int | None:
        with self._lock:
            return self._version

    # -- the request side -------------------------------------------------------------------------------

    def submit(self, prediction_id: int, designation: str, description: str, image: bytes | None) -> bool:
        """Queue a recorded prediction for the shadow model; False (counted) when it is dropped. Never
        blocks: the caller is a request waiting for its answer."""
        with self._lock:
            if self._model is None:
                return False
            self.submitted += 1
            self._busy += 1
        try:
            self._queue.put_nowait(ShadowTask(prediction_id, designation, description, image))
        except queue.Full:
            with self._lock:
                self.dropped += 1
                self._done()
            self._tell("dropped")
            return False
        return True

    # -- the worker -------------------------------------------------------------------------------------

    def _done(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.notify_all()

    def _score(self, task: ShadowTask) -> None:
        with self._lock:
            model, version = self._model, self._version
        if model is None or version is None:  # stopped since it was queued
            return
        result = model.predict(task.designation, task.description, task.image, k=1)
        confidence = float(min(max(result.confidence, 0.0), 1.0))
        with self.sessions() as session:
            session.add(
                ShadowPrediction(
                    prediction_id=task.prediction_id,
                    version=version,
                    code=int(result.prdtypecode),
                    confidence=confidence,
                )
            )
            try:
                session.commit()
            except IntegrityError:  # the prediction was deleted meanwhile, or already scored
                session.rollback()
                raise
        with self._lock:
            self.scored += 1
        self._tell("scored")

    def _tell(self, outcome: str) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # counting must not break scoring
                log.exception("could not count a shadow outcome")

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                self._score(task)
            except Exception as exc:  # one bad product or a database hiccup must not stop the thread
                with self._lock:
                    self.failed += 1
                self._tell("failed")
                log.warning("shadow scoring of prediction %s failed: %s", task.prediction_id, exc)
            finally:
                with self._lock:
                    self._done()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)  # after what is queued: a clean stop scores what it accepted
            self._thread.join(timeout=30)
            self._thread = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every accepted product is scored (benchmarks, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def counts(self) -> ShadowCounts:
        with self._lock:
            return ShadowCounts(
                version=self._version,
                queued=self._queue.qsize(),
                submitted=self.submitted,
                scored=self.scored,
                dropped=self.dropped,
                failed=self.failed,
                queue_size=self.maxsize,
            )

    def status(self) -> dict[str, Any]:
        c = self.counts()
        return {k: getattr(c, k) for k in ShadowCounts.__dataclass_fields__}
