"""Micro-batching: concurrent single predictions share one model call.

The model is cheapest per product on a batch (one onnxruntime run for eight photos costs far less than
eight runs), while the API receives products one request at a time. :class:`MicroBatcher` sits between:

- the request thread *prepares* its product (text cleaning, photo decoding and resizing: Pillow releases the
  GIL, so several requests prepare in parallel) and queues it;
- one model thread takes everything queued and runs the model once on it. It never waits when it is idle
  and nothing is being prepared (a lone request is not delayed); when other requests are still preparing
  their products it waits for them, at most ``max_wait_s``, so that they join the batch.

Products for different models (a swap in the middle) are never mixed: a batch is split by predictor.
A predictor without ``prepare``/``predict_prepared`` (a test double, say) is called directly.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

from prodtype.ml.predictor import Prediction, Predictor, PreparedProduct, ProductInput


@dataclasses.dataclass
class _Job:
    predictor: Any
    prepared: PreparedProduct
    k: int
    future: Future[Prediction]


class MicroBatcher:
    def __init__(self, max_batch: int = 32, max_wait_s: float = 0.002) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0 (got {max_batch}, {max_wait_s})")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._preparing = 0
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.batches = 0  # model calls made, and products they covered: the average batch size
        self.products = 0

    def predict(self, predictor: Predictor, product: ProductInput, k: int = 5) -> Prediction:
        prepare = getattr(predictor, "prepare", None)
        if prepare is None or not callable(getattr(predictor, "predict_prepared", None)):
            return predictor.predict(product.designation, product.description, product.image, k=k)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the prediction batcher is stopped")
            self._preparing += 1
            self._start()
        try:
            prepared = prepare(product)
        except BaseException:
            with self._cond:
                self._preparing -= 1
                self._cond.notify_all()
            raise
        job = _Job(predictor, prepared, k, Future())
        with self._cond:
            self._preparing -= 1
            self._queue.append(job)
            self._cond.notify_all()
        return job.future.result()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-batcher", daemon=True)
            self._thread.start()

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped and not self._queue:
                return None
            deadline = time.monotonic() + self.max_wait_s
            while len(self._queue) < self.max_batch and self._preparing > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            groups: dict[int, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(id(job.predictor), []).append(job)
            for group in groups.values():
                self._serve(group)

    def _serve(self, group: list[_Job]) -> None:
        k = max(job.k for job in group)
        try:
            results = group[0].predictor.predict_prepared([job.prepared for job in group], k)
        except BaseException as exc:
            for job in group:
                job.future.set_exception(exc)
            return
        self.batches += 1
        self.products += len(group)
        for job, result in zip(group, results, strict=True):
            if job.k < k:
                result = dataclasses.replace(result, top_k=result.top_k[: max(1, job.k)])
            job.future.set_result(result)

    def stop(self) -> None:
        """Finish what is queued, then stop the model thread; later predictions are refused."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)


class BatchedPredictor:
    """A predictor whose single predictions go through a :class:`MicroBatcher`."""

    def __init__(self, inner: Predictor, batcher: MicroBatcher) -> None:
        self._inner = inner
        self._batcher = batcher

    @property
    def version(self) -> str:
        return self._inner.version

    @property
    def classes(self) -> list[int]:
        return self._inner.classes

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        return self._batcher.predict(self._inner, ProductInput(designation, description or "", image), k)

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        return self._inner.predict_many(products, k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
