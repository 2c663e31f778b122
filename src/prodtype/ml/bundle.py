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
import io
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
from prodtype.data.text import clean_text, join_text
from prodtype.ml.embeddings import get_embedder
from prodtype.ml.fusion import Fusion
from prodtype.ml.heads import LinearHead
from prodtype.ml.image import ImageEncoder, encoder_version, spec_for_version
from prodtype.ml.model import BranchOutputs, FusedModel, embed
from prodtype.ml.predictor import Candidate, Prediction, PreparedProduct, ProductInput
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
            "image_encoder": report.get("image_encoder") or encoder_version(),
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
    if spec_for_version(str(manifest.get("image_encoder"))) is None:
        raise BundleError(
            f"{path}: trained with image encoder {manifest.get('image_encoder')}, which this prodtype does "
            f"not ship (it has {encoder_version('lite0-int8')} and {encoder_version('lite0')}); retrain the "
            "model"
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
    """A loaded, verified bundle that predicts from raw seller input (the served :class:`Predictor`).

    A prediction has two halves: :meth:`prepare` (clean the text, decode and preprocess the photo), which
    request threads can run side by side, and :meth:`predict_prepared`, the model itself, which is cheapest
    per product on a batch (see :class:`prodtype.serving.batching.MicroBatcher`).
    """

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        max_pixels: int | None = None,
        max_side: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.manifest = verify_bundle(self.path)
        self.model = _load_model(self.path, self.manifest)
        self._threads = threads
        self._limits = {"max_pixels": max_pixels, "max_side": max_side}
        self._encoder: ImageEncoder | None = None
        self._lock = threading.Lock()
        names = self.manifest.get("class_names", {})
        self._names = [str(names.get(str(int(c)), int(c))) for c in self.model.classes]
        self._codes = [int(c) for c in self.model.classes]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def classes(self) -> list[int]:
        return list(self._codes)

    def category(self, code: int) -> str:
        return self._names[self._codes.index(code)] if code in self._codes else f"unknown type {code}"

    @property
    def encoder(self) -> ImageEncoder:
        """The image encoder this bundle was trained with (loaded on first use)."""
        with self._lock:
            if self._encoder is None:
                kwargs: dict[str, Any] = {k: v for k, v in self._limits.items() if v}
                spec = spec_for_version(str(self.manifest["image_encoder"]))
                self._encoder = ImageEncoder(threads=self._threads, spec_path=spec, **kwargs)
            return self._encoder

    def _embedder(self) -> Any:
        name = self.manifest.get("embedder")
        return (
            get_embedder(name, self._threads, int(self.manifest.get("embed_max_chars", 400)))
            if name
            else None
        )

    def warm_up(self) -> None:
        """Load the encoders and run a prediction with a photo and one without: the first request is not
        slow, and the bundle works."""
        from PIL import Image

        photo = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(photo, format="JPEG")
        self.predict_many([ProductInput("warm up", "", photo.getvalue()), ProductInput("warm up")])

    def predict_proba(
        self, texts: list[str], image_features: np.ndarray, has_image: np.ndarray, progress: bool = False
    ) -> np.ndarray:
        if not texts:  # an empty batch, or a header-only X file (the vectorizers refuse 0 rows)
            return np.zeros((0, len(self.model.classes)))
        return self.model.predict_proba(
            texts, embed(self._embedder(), texts, progress), image_features, has_image
        )

    def text_branches(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """The text branches' outputs (TF-IDF scores, sentence-embedding log-probabilities), so that they
        can be computed while the photos are being encoded (:func:`prodtype.ml.batch.predict_file`)."""
        return self.model.text_branches(texts, embed(self._embedder(), texts))

    def fuse(
        self, text: tuple[np.ndarray, np.ndarray | None], image_features: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        """Fused probabilities from :meth:`text_branches` and the photos' features."""
        image_logp = self.model.image_branch(image_features, has_image)
        return self.model.fuse(BranchOutputs(text[0], text[1], image_logp, has_image), has_image)

    def _to_prediction(self, proba: np.ndarray, k: int, has_image: bool) -> Prediction:
        order = np.argsort(-proba)[: max(1, k)]
        top = [Candidate(self._codes[i], self._names[i], round(float(proba[i]), 6)) for i in order]
        return Prediction(top[0].prdtypecode, top[0].category, top[0].probability, top, has_image)

    def prepare_text(self, product: ProductInput) -> str:
        """The text the model reads; ValueError for a title that is empty once cleaned."""
        if not clean_text(product.designation):
            raise ValueError("the designation is empty; every product needs a title")
        return join_text(product.designation, product.description)

    def prepare_image(self, data: bytes) -> np.ndarray:
        """The photo decoded and preprocessed (ImageError when unusable); thread-safe, releases the GIL."""
        return self.encoder.prepare(data)

    def prepare(self, product: ProductInput) -> PreparedProduct:
        """The product's text and preprocessed photo; ValueError for an empty title, ImageError for an
        unusable photo. Thread-safe."""
        text = self.prepare_text(product)
        pixels = self.prepare_image(product.image) if product.image is not None else None
        return PreparedProduct(text, pixels)

    def image_features(self, pixels: list[np.ndarray]) -> np.ndarray:
        """The image encoder on preprocessed photos, in one batch: (n, dim) float32."""
        return self.encoder.encode_preprocessed(np.stack(pixels))

    def combine(
        self,
        text: tuple[np.ndarray, np.ndarray | None],
        image_features: np.ndarray | None,
        k: int = 5,
    ) -> Prediction:
        """One product's prediction from its row of :meth:`text_branches` (each array of shape (1, n_classes))
        and its photo's features (or None): the image head, the fusion and the top k, a fraction of a
        millisecond."""
        has = np.array([image_features is not None])
        feats = (
            image_features.reshape(1, -1)
            if image_features is not None
            else np.zeros((1, self.model.image_head.coef.shape[1]), np.float32)
        )
        return self._to_prediction(self.fuse(text, feats, has)[0], k, bool(has[0]))

    def predict_prepared(self, items: list[PreparedProduct], k: int = 5) -> list[Prediction]:
        """The model on prepared products, in one batch."""
        if not items:
            return []
        feats = np.zeros((len(items), self.model.image_head.coef.shape[1]), np.float32)
        has = np.array([p.pixels is not None for p in items], dtype=bool)
        if has.any():
            feats[has] = self.image_features([p.pixels for p in items if p.pixels is not None])
        proba = self.predict_proba([p.text for p in items], feats, has)
        return [self._to_prediction(proba[i], k, bool(has[i])) for i in range(len(items))]

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        prepared = []
        for i, product in enumerate(products):
            try:
                prepared.append(self.prepare(product))
            except ValueError as exc:
                if len(products) == 1:
                    raise
                raise type(exc)(f"product {i}: {exc}") from exc
        return self.predict_prepared(prepared, k)

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        return self.predict_many([ProductInput(designation, description or "", image)], k)[0]


def load_bundle(
    path: Path, *, threads: int | None = None, max_pixels: int | None = None, max_side: int | None = None
) -> ModelBundle:
    return ModelBundle(Path(path), threads=threads, max_pixels=max_pixels, max_side=max_side)
