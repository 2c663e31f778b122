"""Scoring each new prediction with a second model (the one in shadow) off the request path.

The request that made the prediction only puts the product on a bounded queue (``put_nowait``: never a
wait); one background thread takes it from there, asks the shadow model, and records its answer in
``shadow_predictions`` beside the served model's. When the queue is full the product is dropped and
counted (:attr:`ShadowScorer.dropped`): a shadow that cannot keep up loses samples, it never slows the
answers. The thread also waits for a quiet moment (:class:`QuietGate`: no answer computed by the served
model in this process for a few milliseconds; :class:`Gated` holds the gate while it computes one) before
each product, so that it uses the CPU the answers leave idle instead of competing with them: under
sustained load the queue fills and products are dropped (counted), the answers keep their latency.
Which version runs in shadow is decided elsewhere (:mod:`prodtype.loop.shadow` installs it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from prodtype.db.tables import ShadowPrediction
from prodtype.ml.predictor import Prediction, Predictor, PredictorWrapper, ProductInput

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256
# How long no answer must have been computed before the shadow takes the CPU for one product.
QUIET_SECONDS = 0.02


class QuietGate:
    """Answers being computed in this process, and a wait for a moment without any (the shadow's turn)."""

    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.quiet_seconds = quiet_seconds
        self._cond = threading.Condition()
        self._in_flight = 0
        self._last_end = 0.0

    @contextmanager
    def held(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def enter(self) -> None:
        with self._cond:
            self._in_flight += 1

    def leave(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._last_end = time.monotonic()
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @property
    def last_end(self) -> float:
        """``time.monotonic()`` when the last request ended (0 before the first)."""
        with self._cond:
            return self._last_end

    def wait_quiet(self, stop: threading.Event | None = None) -> None:
        """Return once no request has been in flight for ``quiet_seconds`` (or when ``stop`` is set)."""
        with self._cond:
            while stop is None or not stop.is_set():
                if self._in_flight:
                    self._cond.wait(0.5)  # woken by the request's end
                    continue
                left = self._last_end + self.quiet_seconds - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)


class Gated(PredictorWrapper):
    """The served model, holding ``gate`` while it computes an answer: the shadow scorer waits for the gate
    to be quiet, so it never takes the CPU from an answer being computed. Cheap requests (status polls,
    pages, /metrics) do not hold it, so they cannot starve the shadow."""

    def __init__(self, inner: Predictor, gate: QuietGate) -> None:
        super().__init__(inner)
        self._gate = gate

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        with self._gate.held():
            return self._inner.predict(designation, description, image, k=k)

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        with self._gate.held():
            return self._inner.predict_many(products, k)

    def predict_prepared(self, items: list[Any], k: int = 5) -> list[Prediction]:
        with self._gate.held():
            result: list[Prediction] = self._inner.predict_prepared(items, k)  # type: ignore[attr-defined]
            return result


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
        gate: QuietGate | None = None,
    ) -> None:
        self.sessions = sessions
        # None: score at once (tests of the queue itself); the app passes the gate its requests go through
        self.gate = gate
        self._stopping = threading.Event()
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
            if self.gate is not None:
                self.gate.wait_quiet(self._stopping)
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
            self._stopping.set()  # no more waiting for quiet moments: what is left is scored now
            self._queue.put(None)  # after what is queued: a clean stop scores what it accepted
            self._thread.join(timeout=30)
            self._thread = None
            self._stopping.clear()

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
