"""The micro-batcher with the real model bundle: concurrent predictions share model calls, each caller gets
exactly the answer the model gives it alone, errors stay with their caller, models are never mixed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from prodtype.ml.bundle import ModelBundle, load_bundle
from prodtype.ml.image import ImageError
from prodtype.ml.predictor import Prediction, ProductInput
from prodtype.serving.batching import BatchedPredictor, MicroBatcher
from service_support.images import photo

PRODUCTS = [
    ProductInput("Piscine tubulaire ronde 3,05 x 0,76 m", "avec pompe de filtration", photo(0)),
    ProductInput("Fifa 18 [Jeu PS4]"),
    ProductInput("Taie d'oreiller", "<p>coton 50x50</p>", photo(1)),
    ProductInput("Carte Pokémon Pikachu", "", photo(2)),
    ProductInput("Le Petit Prince", "Roman de Saint-Exupéry"),
    ProductInput("Lot de 3 stylos bille", "encre bleue", photo(3)),
]


@pytest.fixture(scope="module")
def bundle(trained_bundle: Path) -> ModelBundle:
    model = load_bundle(trained_bundle, threads=1)
    model.warm_up()
    return model


@pytest.fixture
def batcher() -> Iterator[MicroBatcher]:
    b = MicroBatcher(max_batch=32, max_wait_s=0.05)
    yield b
    b.stop()


class Gate:
    """A predictor wrapper whose model calls wait until released, recording each call's kind and size."""

    def __init__(self, inner: ModelBundle) -> None:
        self.inner = inner
        self.calls: list[tuple[str, int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def classes(self) -> list[int]:
        return self.inner.classes

    def prepare_text(self, product: ProductInput) -> str:
        return self.inner.prepare_text(product)

    def prepare_image(self, data: bytes) -> Any:
        return self.inner.prepare_image(data)

    def _held(self, kind: str, size: int) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.calls.append((kind, size))

    def text_branches(self, texts: list[str]) -> Any:
        self._held("text", len(texts))
        return self.inner.text_branches(texts)

    def image_features(self, pixels: list[Any]) -> Any:
        self._held("image", len(pixels))
        return self.inner.image_features(pixels)

    def combine(self, text: Any, features: Any, k: int = 5) -> Prediction:
        return self.inner.combine(text, features, k)

    def predict_prepared(self, items: list[Any], k: int = 5) -> list[Prediction]:
        self._held("product", len(items))
        return self.inner.predict_prepared(items, k)

    def predict(self, *args: Any, **kwargs: Any) -> Prediction:
        raise AssertionError("the batcher must use the split methods")

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        raise AssertionError("the batcher must use the split methods")


def run_all(fn: Callable[[int], Any], count: int) -> tuple[list[Any], list[BaseException]]:
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = fn(i)
        except BaseException as exc:  # collected: an exception in a thread is only a warning to pytest
            errors.append(exc)

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(one, range(count)))
    return results, errors


def test_concurrent_predictions_share_model_calls_and_get_their_own_answers(
    bundle: ModelBundle, batcher: MicroBatcher
) -> None:
    gate = Gate(bundle)
    # the first request occupies the model thread; the others queue up behind it and share calls
    first = threading.Thread(target=lambda: batcher.predict(gate, ProductInput("Fifa 18 [Jeu PS4]"), k=5))
    first.start()
    assert gate.entered.wait(30)
    pool = ThreadPoolExecutor(len(PRODUCTS))
    futures = [pool.submit(batcher.predict, gate, p, 3) for p in PRODUCTS]
    deadline = time.monotonic() + 60
    while len(batcher._queue) < len(PRODUCTS):  # every product queued, whole, behind the held call
        assert time.monotonic() < deadline, "the requests never reached the queue"
        threading.Event().wait(0.01)
    gate.release.set()
    results = [f.result(timeout=60) for f in futures]
    first.join(30)
    pool.shutdown()
    assert gate.calls == [("product", 1), ("product", len(PRODUCTS))]
    for product, got in zip(PRODUCTS, results, strict=True):
        alone = bundle.predict(product.designation, product.description, product.image, k=3)
        assert got.prdtypecode == alone.prdtypecode
        assert got.has_image == (product.image is not None)
        assert [c.prdtypecode for c in got.top_k] == [c.prdtypecode for c in alone.top_k]
        assert len(got.top_k) == 3
        assert got.confidence == pytest.approx(alone.confidence, abs=3e-6)  # rounded to 6 places


def test_a_text_is_read_while_its_photo_is_decoded(bundle: ModelBundle, batcher: MicroBatcher) -> None:
    """The text job reaches the model before the photo is decoded: the two halves overlap."""
    seen: list[str] = []
    decoded = threading.Event()

    class Watch(Gate):
        def prepare_image(self, data: bytes) -> Any:
            assert text_done.wait(30), "the text was not embedded while the photo waited to be decoded"
            seen.append("decode")
            decoded.set()
            return self.inner.prepare_image(data)

        def text_branches(self, texts: list[str]) -> Any:
            seen.append("text")
            out = self.inner.text_branches(texts)
            text_done.set()
            return out

    text_done = threading.Event()
    watch = Watch(bundle)
    watch.release.set()
    got = batcher.predict(watch, PRODUCTS[0], k=5)
    assert seen == ["text", "decode"] and decoded.is_set()
    assert got == bundle.predict(PRODUCTS[0].designation, PRODUCTS[0].description, PRODUCTS[0].image, k=5)


def test_a_lone_request_does_not_wait_for_the_batch_window(bundle: ModelBundle) -> None:
    patient = MicroBatcher(max_batch=32, max_wait_s=60)  # a wait would show as a 60 s stall
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (patient.predict(bundle, PRODUCTS[1]), done.set())).start()
        assert done.wait(30), "a single request waited for others although none was being prepared"
    finally:
        patient.stop()


def test_a_bad_photo_fails_only_its_own_request(bundle: ModelBundle, batcher: MicroBatcher) -> None:
    products = [*PRODUCTS[:3], ProductInput("Chaise de jardin", "", b"not a picture at all"), *PRODUCTS[3:]]
    results, errors = run_all(lambda i: batcher.predict(bundle, products[i]), len(products))
    assert len(errors) == 1 and isinstance(errors[0], ImageError)
    assert results[3] is None
    assert all(isinstance(r, Prediction) for i, r in enumerate(results) if i != 3)


def test_two_models_are_never_mixed_in_one_call(bundle: ModelBundle, batcher: MicroBatcher) -> None:
    a, b = Gate(bundle), Gate(bundle)
    a.release.set()
    b.release.set()
    _, errors = run_all(lambda i: batcher.predict(a if i % 2 else b, PRODUCTS[i % len(PRODUCTS)]), 12)
    assert not errors
    for gate, mine in ((a, PRODUCTS[1::2]), (b, PRODUCTS[0::2])):  # each model saw exactly its own products
        texts = sum(n for kind, n in gate.calls if kind in ("text", "product"))
        photos = sum(n for kind, n in gate.calls if kind == "image")
        assert texts == 6 and photos <= 2 * sum(p.image is not None for p in mine)


def test_batched_predictor_answers_like_the_model(bundle: ModelBundle, batcher: MicroBatcher) -> None:
    served = BatchedPredictor(bundle, batcher)
    assert served.version == bundle.version and served.classes == bundle.classes
    got = served.predict(PRODUCTS[0].designation, PRODUCTS[0].description, PRODUCTS[0].image, k=2)
    assert got == bundle.predict(PRODUCTS[0].designation, PRODUCTS[0].description, PRODUCTS[0].image, k=2)


def test_a_stopped_batcher_refuses_new_predictions(bundle: ModelBundle) -> None:
    batcher = MicroBatcher()
    batcher.predict(bundle, PRODUCTS[1])
    batcher.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        batcher.predict(bundle, PRODUCTS[1])
