"""Micro-batching: concurrent single predictions share model calls, and a photo is decoded while its text is
read.

A prediction has two halves that need different resources: the text branches (TF-IDF, sentence
embedding) and the photo (decoding and resizing, which Pillow does without the GIL, then the image
encoder). :class:`MicroBatcher` runs them as a small pipeline:

- when the model thread is idle, the request thread queues a *text job* at once and decodes its photo
  while the model thread embeds the text, then queues an *image job*, and combines the two results itself
  (image head, fusion, top k: a fraction of a millisecond): a lone request's two halves overlap;
- when it is busy (under load), the request decodes its photo and queues the whole *product*: one model
  thread takes everything queued and runs the model once per kind and per model on it, so that eight
  photos share one encoder run (splitting each request in two then costs more than it saves: measured,
  53-63 against 71 predictions per second at 8 clients).

The model thread never waits when it has text to do or nothing is being decoded; otherwise it waits for
the photos being decoded at most ``max_wait_s``. Jobs of different models (a swap in the middle) are never
mixed. A predictor without the split methods (a test double, say) is called directly.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Literal

import numpy as np

from prodtype.ml.predictor import Prediction, Predictor, PredictorWrapper, PreparedProduct, ProductInput

_SPLIT = ("prepare_text", "prepare_image", "text_branches", "image_features", "combine", "predict_prepared")


@dataclasses.dataclass
class _Job:
    kind: Literal["text", "image", "product"]
    predictor: Any
    payload: Any  # the cleaned text, the preprocessed photo, or both (PreparedProduct)
    future: Future[Any]
    k: int = 5


class MicroBatcher:
    def __init__(self, max_batch: int = 32, max_wait_s: float = 0.002) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0 (got {max_batch}, {max_wait_s})")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._preparing = 0  # photos being decoded by request threads
        self._busy = False  # the model thread is running a call
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.calls = 0  # model calls made, and the jobs they covered: the average batch size
        self.jobs = 0

    def predict(self, predictor: Predictor, product: ProductInput, k: int = 5) -> Prediction:
        if not all(callable(getattr(predictor, name, None)) for name in _SPLIT):
            return predictor.predict(product.designation, product.description, product.image, k=k)
        model: Any = predictor
        text = model.prepare_text(product)
        with self._cond:
            idle = not self._busy and not self._queue
            if product.image is not None:
                self._preparing += 1
        if product.image is None or not idle:
            # under load: the whole product in one job, batched with the others
            pixels = self._decode(model, product.image) if product.image is not None else None
            job = self._submit("product", model, PreparedProduct(text, pixels), k=k)
            prediction: Prediction = job.result()
            return prediction
        # idle model thread: it embeds the text while this thread decodes the photo
        text_job = self._submit("text", model, text)
        image_job = self._submit("image", model, self._decode(model, product.image))
        prediction = model.combine(text_job.result(), image_job.result(), k)
        return prediction

    def _decode(self, model: Any, data: bytes) -> Any:
        """The photo decoded in this thread; the model thread knows one fewer photo is on its way."""
        try:
            return model.prepare_image(data)
        finally:
            with self._cond:
                self._preparing -= 1
                self._cond.notify_all()

    def _submit(
        self, kind: Literal["text", "image", "product"], predictor: Any, payload: Any, k: int = 5
    ) -> Future[Any]:
        job = _Job(kind, predictor, payload, Future(), k)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the prediction batcher is stopped")
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prediction-batcher", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return job.future

    def _take(self) -> list[_Job] | None:
        with self._cond:
            self._busy = False
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped and not self._queue:
                return None
            deadline = time.monotonic() + self.max_wait_s
            # no text waiting, and photos still being decoded: let them join, briefly
            while (
                self._preparing > 0
                and len(self._queue) < self.max_batch
                and all(job.kind != "text" for job in self._queue)
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            # texts first: their requests may still be decoding photos, which then join the next call
            jobs = sorted(self._queue, key=lambda job: job.kind != "text")[: self.max_batch]
            taken = {id(job) for job in jobs}
            kept = [job for job in self._queue if id(job) not in taken]
            self._queue.clear()
            self._queue.extend(kept)
            self._busy = True
            return jobs

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            groups: dict[tuple[str, int], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.kind, id(job.predictor)), []).append(job)
            for (kind, _), group in groups.items():
                self._serve(kind, group)

    def _serve(self, kind: str, group: list[_Job]) -> None:
        model = group[0].predictor
        try:
            if kind == "text":
                scores, embed = model.text_branches([job.payload for job in group])
                rows: list[Any] = [
                    (scores[i : i + 1], None if embed is None else embed[i : i + 1])
                    for i in range(len(group))
                ]
            elif kind == "image":
                features = model.image_features([job.payload for job in group])
                rows = [np.asarray(features[i]) for i in range(len(group))]
            else:
                k = max(job.k for job in group)
                rows = model.predict_prepared([job.payload for job in group], k)
                rows = [
                    dataclasses.replace(r, top_k=r.top_k[: max(1, job.k)]) if job.k < k else r
                    for job, r in zip(group, rows, strict=True)
                ]
        except BaseException as exc:
            for job in group:
                job.future.set_exception(exc)
            return
        self.calls += 1
        self.jobs += len(group)
        for job, row in zip(group, rows, strict=True):
            job.future.set_result(row)

    def stop(self) -> None:
        """Finish what is queued, then stop the model thread; later predictions are refused."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)


class BatchedPredictor(PredictorWrapper):
    """A predictor whose single predictions go through a :class:`MicroBatcher`."""

    def __init__(self, inner: Predictor, batcher: MicroBatcher) -> None:
        super().__init__(inner)
        self._batcher = batcher

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        return self._batcher.predict(self._inner, ProductInput(designation, description or "", image), k)
