"""The model bundle: one directory with a manifest and the model parts in safe formats.

Layout::

    manifest.json          format version, prodtype version, classes and names, metrics, fingerprint,
                           creation time, the image encoder it needs, sha256 of every other file
    tfidf.json, tfidf.npz  TF-IDF vocabularies and idf weights
    heads.npz              linear heads (text SVM, embedding, image) and the fusion model
    training_report.json   what training saw and how long it took

Nothing in a bundle executes code when loaded (no pickles): JSON and ``np.load(allow_pickle=False)``.
Loading verifies the format version, the checksums and the classes before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import prodtype
from prodtype.catalog import Catalog
from prodtype.ml.embeddings import get_embedder
from prodtype.ml.fusion import Fusion
from prodtype.ml.heads import LinearHead
from prodtype.ml.image import ImageEncoder, encoder_version
from prodtype.ml.model import FusedModel, embed
from prodtype.ml.predictor import Candidate, Prediction, ProductInput
from prodtype.ml.text import TfidfFeatures

FORMAT = "prodtype-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """A model bundle is missing, corrupt, or incompatible with this prodtype."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty destination unless ``overwrite``: callers check before training, not after."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise BundleError(f"{out_dir} already exists and is not empty; choose another folder or overwrite")


def save_bundle(
    model: FusedModel,
    out_dir: Path,
    *,
    catalog: Catalog,
    config: Any,
    report: dict[str, Any],
    overwrite: bool = False,
    extra_manifest: dict[str, Any] | None = None,
) -> Path:
    """Write the bundle to a temporary sibling folder, then move it into place (never half-written)."""
    out_dir = Path(out_dir)
    check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        files = model.tfidf.save(tmp)
        arrays: dict[str, np.ndarray] = {}
        arrays.update(model.text_head.to_arrays("text."))
        if model.embed_head is not None:
            arrays.update(model.embed_head.to_arrays("embed."))
        arrays.update(model.image_head.to_arrays("image."))
        arrays["fusion.weights"] = model.fusion.weights
        arrays["fusion.bias"] = model.fusion.bias
        np.savez(tmp / "heads.npz", **arrays)  # type: ignore[arg-type]
        files.append("heads.npz")
        _write_json(tmp / "training_report.json", report)
        files.append("training_report.json")
        checksums = {name: _sha256(tmp / name) for name in files}
        created = datetime.now(UTC)
        content = hashlib.sha256("".join(checksums[f] for f in sorted(checksums)).encode()).hexdigest()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": f"{created:%Y%m%d-%H%M%S}-{content[:8]}",
            "prodtype_version": prodtype.__version__,
            "created_at": created.isoformat(),
            "classes": [int(c) for c in model.classes],
            "class_names": {str(int(c)): catalog.name(int(c)) for c in model.classes},
            "embedder": getattr(config, "embedder", None),
            "embed_max_chars": getattr(config, "embed_max_chars", 400),
            "image_encoder": encoder_version(),
            "fingerprint": report.get("fingerprint", ""),
            "metrics": {"out_of_fold": report.get("out_of_fold", {})},
            "files": checksums,
            **(extra_manifest or {}),
        }
        _write_json(tmp / MANIFEST, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_manifest(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist or is not a folder")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is not a model bundle: {MANIFEST} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path / MANIFEST} is corrupt: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path / MANIFEST} is not a prodtype bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {manifest.get('format_version')!r} is not supported by prodtype "
            f"{prodtype.__version__} (expected {FORMAT_VERSION}); retrain the model with this version"
        )
    return manifest


def verify_bundle(path: Path) -> dict[str, Any]:
    """The manifest, after checking every listed file's checksum and the image encoder it needs."""
    manifest = read_manifest(path)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path / MANIFEST} lists no files")
    for name, expected in files.items():
        f = Path(path) / name
        if Path(name).name != name:
            raise BundleError(f"{path / MANIFEST} lists an unsafe file name {name!r}")
        if not f.is_file():
            raise BundleError(f"{path}: {name} is missing")
        if _sha256(f) != expected:
            raise BundleError(f"{path}: {name} is corrupt (checksum mismatch)")
    if manifest.get("image_encoder") != encoder_version():
        raise BundleError(
            f"{path}: trained with image encoder {manifest.get('image_encoder')}, but this prodtype ships "
            f"{encoder_version()}; retrain the model"
        )
    return manifest


def _load_model(path: Path, manifest: dict[str, Any]) -> FusedModel:
    try:
        tfidf = TfidfFeatures.load(path)
        with np.load(path / "heads.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        classes = np.asarray(manifest["classes"], dtype=np.int64)
        heads = {p: LinearHead.from_arrays(arrays, f"{p}.") for p in ("text", "image")}
        embed_head = LinearHead.from_arrays(arrays, "embed.") if "embed.kind" in arrays else None
        fusion = Fusion(arrays["fusion.weights"].astype(np.float64), arrays["fusion.bias"].astype(np.float64))
    except (KeyError, ValueError, OSError) as exc:
        raise BundleError(f"{path}: cannot load the model parts ({exc})") from None
    for name, head in [*heads.items(), ("embed", embed_head)]:
        if head is not None and not np.array_equal(head.classes, classes):
            raise BundleError(f"{path}: the {name} head's classes do not match the manifest")
    n_branches = 3 if embed_head is not None else 2
    if fusion.weights.shape != (2, n_branches) or fusion.bias.shape != (len(classes),):
        raise BundleError(f"{path}: the fusion weights do not match the model's branches and classes")
    if tfidf.n_features != heads["text"].coef.shape[1]:
        raise BundleError(f"{path}: the text head does not match the TF-IDF vocabulary")
    return FusedModel(classes, tfidf, heads["text"], embed_head, heads["image"], fusion)


class ModelBundle:
    """A loaded, verified bundle that predicts from raw seller input (the served :class:`Predictor`)."""

    def __init__(self, path: Path, *, threads: int | None = None, max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.manifest = verify_bundle(self.path)
        self.model = _load_model(self.path, self.manifest)
        self._threads = threads
        self._max_pixels = max_pixels
        self._encoder: ImageEncoder | None = None
        self._lock = threading.Lock()
        names = self.manifest.get("class_names", {})
        self._names = [str(names.get(str(int(c)), int(c))) for c in self.model.classes]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def classes(self) -> list[int]:
        return [int(c) for c in self.model.classes]

    def category(self, code: int) -> str:
        return self._names[self.classes.index(code)] if code in self.classes else f"unknown type {code}"

    @property
    def encoder(self) -> ImageEncoder:
        with self._lock:
            if self._encoder is None:
                kwargs: dict[str, Any] = {"threads": self._threads}
                if self._max_pixels:
                    kwargs["max_pixels"] = self._max_pixels
                self._encoder = ImageEncoder(**kwargs)
            return self._encoder

    def _embedder(self) -> Any:
        name = self.manifest.get("embedder")
        return (
            get_embedder(name, self._threads, int(self.manifest.get("embed_max_chars", 400)))
            if name
            else None
        )

    def warm_up(self) -> None:
        """Load the encoders and run one prediction: the first request is not slow, and the bundle works."""
        self.predict("warm up", "", None)
        _ = self.encoder

    def predict_proba(
        self, texts: list[str], image_features: np.ndarray, has_image: np.ndarray, progress: bool = False
    ) -> np.ndarray:
        if not texts:  # an empty batch, or a header-only X file (the vectorizers refuse 0 rows)
            return np.zeros((0, len(self.model.classes)))
        return self.model.predict_proba(
            texts, embed(self._embedder(), texts, progress), image_features, has_image
        )

    def _to_prediction(self, proba: np.ndarray, k: int, has_image: bool) -> Prediction:
        order = np.argsort(-proba)[: max(1, k)]
        top = [Candidate(self.classes[i], self._names[i], round(float(proba[i]), 6)) for i in order]
        return Prediction(top[0].prdtypecode, top[0].category, top[0].probability, top, has_image)

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        from prodtype.data.text import clean_text, join_text

        for i, p in enumerate(products):
            if not clean_text(p.designation):
                raise ValueError(f"product {i}: the designation is empty; every product needs a title")
        texts = [join_text(p.designation, p.description) for p in products]
        feats = np.zeros((len(products), self.model.image_head.coef.shape[1]), np.float32)
        has = np.zeros(len(products), bool)
        with_image = [i for i, p in enumerate(products) if p.image is not None]
        if with_image:
            feats[with_image] = self.encoder.encode_batch([products[i].image for i in with_image])  # type: ignore[misc]
            has[with_image] = True
        proba = self.predict_proba(texts, feats, has)
        return [self._to_prediction(proba[i], k, bool(has[i])) for i in range(len(products))]

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        return self.predict_many([ProductInput(designation, description or "", image)], k)[0]


def load_bundle(path: Path, *, threads: int | None = None, max_pixels: int | None = None) -> ModelBundle:
    return ModelBundle(Path(path), threads=threads, max_pixels=max_pixels)
