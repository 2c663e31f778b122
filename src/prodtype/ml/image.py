"""Image features: decode untrusted image bytes safely, preprocess them, and encode them with ONNX.

The encoder is EfficientNet-Lite0 with ImageNet weights, exported by ``scripts/export_image_encoder.py`` to
``prodtype/assets/efficientnet_lite0_features.onnx``. Its companion JSON holds the preprocessing constants;
:func:`preprocess` reads them from there, so the runtime cannot drift from what the export declared.

Features are the raw globally average-pooled activations (1280 values, all >= 0 after ReLU6), NOT
L2-normalised: scaling is the classifier's decision (it can standardise or normalise them as it sees fit),
raw values keep the activation magnitude as information, and cached features stay valid whatever the head
does with them.

No torch here: only onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

__all__ = [
    "ACCEPTED_FORMATS",
    "EncoderIntegrityError",
    "EncoderSpec",
    "ImageEncoder",
    "ImageError",
    "decode_image",
    "encoder_version",
    "load_spec",
    "preprocess",
]

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_SPEC = ASSETS_DIR / "efficientnet_lite0_features.json"
DEFAULT_MAX_PIXELS = 40_000_000
# Formats Pillow may parse here: the ones sellers upload (JPEG includes phones' multi-picture MPO files).
# Fewer parsers reachable from untrusted bytes.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# The one resize policy this code implements; a spec asking for another is refused rather than ignored.
RESIZE_POLICY = "pad_to_square_centre_crop_resize"
# Part of the encoder version: bump it when preprocess() changes its output for the same spec.
PREPROCESS_REVISION = 1


class ImageError(ValueError):
    """The bytes are not a usable image: empty, not an image, corrupt or truncated, or too large."""


class EncoderIntegrityError(RuntimeError):
    """The packaged encoder files are missing, inconsistent, or ask for something this code cannot do."""


@dataclass(frozen=True)
class EncoderSpec:
    """What the encoder's JSON declares: files, checksum, feature size and preprocessing constants."""

    path: Path
    name: str
    onnx_path: Path
    onnx_sha256: str
    input_name: str
    output_name: str
    feature_dim: int
    input_size: int
    pad_colour: tuple[int, int, int]
    crop_fraction: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    version: str

    @classmethod
    def from_file(cls, path: Path) -> EncoderSpec:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            pre = raw["preprocessing"]
            resize = pre["resize"]
            if (resize["policy"], resize["resample"], pre["channel_order"], pre["layout"]) != (
                RESIZE_POLICY,
                "bicubic",
                "RGB",
                "NCHW",
            ):
                raise EncoderIntegrityError(
                    f"{path} asks for resize policy {resize['policy']!r} ({resize['resample']}, "
                    f"{pre['channel_order']}, {pre['layout']}); this code implements only "
                    f"{RESIZE_POLICY!r} (bicubic, RGB, NCHW)"
                )
            identity = {"onnx_sha256": raw["onnx_sha256"], "preprocessing": pre, "rev": PREPROCESS_REVISION}
            digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
            return cls(
                path=path,
                name=str(raw["name"]),
                onnx_path=path.parent / raw["onnx_file"],
                onnx_sha256=str(raw["onnx_sha256"]),
                input_name=str(raw["input_name"]),
                output_name=str(raw["output_name"]),
                feature_dim=int(raw["feature_dim"]),
                input_size=int(pre["input_size"]),
                pad_colour=_triple(resize["pad_colour"], int),
                crop_fraction=float(resize["crop_fraction"]),
                mean=_triple(pre["mean"], float),
                std=_triple(pre["std"], float),
                version=f"{raw['name']}-{digest[:16]}",
            )
        except OSError as exc:
            raise EncoderIntegrityError(f"cannot read the image encoder spec {path}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise EncoderIntegrityError(
                f"{path} is not a valid encoder spec ({type(exc).__name__}: {exc}); "
                "re-create it with scripts/export_image_encoder.py"
            ) from exc


def _triple(values: Any, kind: type) -> Any:
    if len(values) != 3:
        raise ValueError(f"expected 3 per-channel values, got {values!r}")
    return tuple(kind(v) for v in values)


@cache
def load_spec(path: Path | None = None) -> EncoderSpec:
    """The encoder spec at ``path`` (default: the packaged one), read once per path."""
    return EncoderSpec.from_file(path or DEFAULT_SPEC)


def encoder_version(spec_path: Path | None = None) -> str:
    """Identity of the image features, e.g. ``efficientnet_lite0_features-1a2b3c4d5e6f7a8b``.

    A digest of the ONNX file's sha256, the preprocessing constants and :data:`PREPROCESS_REVISION`: it
    changes whenever the same image could get different features. Use it as the feature cache namespace and
    record it in model bundles (a classifier trained on one version must not be served with another).
    Reads only the JSON; :class:`ImageEncoder` checks the ONNX file against it when it loads.
    """
    return load_spec(spec_path).version


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode untrusted image bytes to a fully loaded RGB image, upright per its EXIF orientation.

    Refuses (with :class:`ImageError`) an empty payload, bytes that are not an image of
    :data:`ACCEPTED_FORMATS`, an image whose header declares more than ``max_pixels`` pixels (checked before
    any pixel is decoded, whatever Pillow's global ``MAX_IMAGE_PIXELS``), and a corrupt or truncated file
    (the pixels are fully decoded here; relies on Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES =
    False``). Transparency is composited on white; palette, greyscale, 16-bit and CMYK become RGB
    (ICC profiles are not applied). Animated images give their first frame.
    """
    if not data:
        raise ImageError("empty image payload (0 bytes); expected the bytes of an image file")
    described = f"{len(data):,} bytes starting {bytes(data[:8])!r}"
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image dimensions are absurdly large ({exc}); at most {max_pixels:,} pixels are accepted"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"not a recognised image ({described}); expected one of {', '.join(ACCEPTED_FORMATS)}"
        ) from exc
    except Exception as exc:  # any parser failure on untrusted bytes is a bad image, not a crash
        raise ImageError(f"unreadable image header ({described}): {exc}") from exc
    width, height = img.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise ImageError(
            f"{img.format} image declares {width}x{height} = {width * height:,} pixels; at most "
            f"{max_pixels:,} are accepted (checked before decoding, against decompression bombs)"
        )
    try:
        img.load()
    except Exception as exc:
        raise ImageError(
            f"corrupt or truncated {img.format} image ({width}x{height}, {len(data):,} bytes): {exc}; "
            "expected a complete image file"
        ) from exc
    with contextlib.suppress(Exception):  # broken EXIF metadata must not make a good picture unusable
        ImageOps.exif_transpose(img, in_place=True)
    return _to_rgb(img)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    try:
        if mode.startswith("I") or mode == "F":  # 16/32-bit greyscale: scale 0..65535 to 0..255
            values = np.asarray(img, dtype=np.float64)
            scale = 255.0 / 65535.0 if mode.startswith("I") else 1.0
            grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
            return Image.fromarray(grey).convert("RGB")
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            canvas.alpha_composite(rgba)
            return canvas.convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot convert a {mode} image to RGB: {exc}") from exc


def preprocess(img: Image.Image, spec: EncoderSpec | None = None) -> np.ndarray:
    """The encoder's input for one image: float32 (3, size, size), normalised as the spec says.

    Pads a non-square image to a square with the pad colour (white), crops the centre ``crop_fraction``
    of it, resizes that to ``input_size`` with Pillow's bicubic filter, then ``(pixel - mean) / std``.
    """
    spec = spec or load_spec()
    img = _to_rgb(img)
    width, height = img.size
    if width != height:
        side = max(width, height)
        canvas = Image.new("RGB", (side, side), spec.pad_colour)
        canvas.paste(img, ((side - width) // 2, (side - height) // 2))
        img = canvas
    side = img.size[0]
    crop = side * spec.crop_fraction
    offset = (side - crop) / 2
    box = (offset, offset, offset + crop, offset + crop)
    size = spec.input_size
    img = img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    mean = np.array(spec.mean, dtype=np.float32)
    std = np.array(spec.std, dtype=np.float32)
    normalised = (np.asarray(img, dtype=np.float32) - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


class ImageEncoder:
    """EfficientNet-Lite0 features through onnxruntime: bytes or files in, (n, 1280) float32 out.

    ``threads`` sets onnxruntime's intra-op threads (inter-op is 1); default: the CPUs this process may use.
    Encoding is thread-safe (onnxruntime sessions are), so one encoder can serve concurrent requests.
    """

    def __init__(
        self,
        threads: int | None = None,
        batch_size: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        spec_path: Path | None = None,
    ) -> None:
        threads = len(os.sched_getaffinity(0)) if threads is None else threads
        if threads < 1 or batch_size < 1 or max_pixels < 1:
            raise ValueError(
                f"threads, batch_size and max_pixels must be >= 1 (got {threads}, {batch_size}, {max_pixels})"
            )
        self.spec = load_spec(spec_path)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        try:
            model = self.spec.onnx_path.read_bytes()
        except OSError as exc:
            raise EncoderIntegrityError(
                f"cannot read the image encoder {self.spec.onnx_path}: {exc}"
            ) from exc
        digest = hashlib.sha256(model).hexdigest()
        if digest != self.spec.onnx_sha256:
            raise EncoderIntegrityError(
                f"{self.spec.onnx_path} has sha256 {digest}, but {self.spec.path} expects "
                f"{self.spec.onnx_sha256}: the file is corrupt or was replaced without its spec "
                "(re-run scripts/export_image_encoder.py)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.threads = threads

    @property
    def dim(self) -> int:
        return self.spec.feature_dim

    @property
    def version(self) -> str:
        """See :func:`encoder_version`."""
        return self.spec.version

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Features for already preprocessed images, (n, 3, size, size) float32 -> (n, dim) float32."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self._session.run(
                [self.spec.output_name], {self.spec.input_name: batch[i : i + self.batch_size]}
            )[0]
            for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def encode_bytes(self, data: bytes) -> np.ndarray:
        """Features of one image, (dim,) float32; :class:`ImageError` if the bytes are not a usable image."""
        return self.encode_batch([data])[0]

    def encode_batch(self, items: Sequence[bytes]) -> np.ndarray:
        """Features of several images, (n, dim) float32; the first unusable one raises :class:`ImageError`."""
        arrays = []
        for i, data in enumerate(items):
            try:
                arrays.append(preprocess(decode_image(data, self.max_pixels), self.spec))
            except ImageError as exc:
                if len(items) == 1:
                    raise
                raise ImageError(f"image {i} of {len(items)}: {exc}") from exc
        if not arrays:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_preprocessed(np.stack(arrays))

    def cache_file(self, cache_dir: Path, data: bytes) -> Path:
        """Where :meth:`encode_files` caches the features of an image with these bytes."""
        return self._cache_path(Path(cache_dir), hashlib.sha256(data).hexdigest())

    def _cache_path(self, cache_dir: Path, key: str) -> Path:
        return cache_dir / self.version / key[:2] / f"{key}.npy"

    def encode_files(
        self,
        paths: Sequence[str | os.PathLike[str] | None],
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Features of image files: ``(features (n, dim) float32, has_feature (n,) bool, failures)``.

        A ``None`` path gives a zero row with ``has_feature`` False; so does a file that cannot be read or
        decoded, which is also listed in ``failures`` as ``(path, reason)`` instead of raising. With
        ``cache_dir``, features are stored under ``cache_dir/<encoder version>/<hh>/<sha256 of the file's
        bytes>.npy`` (written atomically) and read back on later calls, so unchanged images are encoded once.
        Identical files within one call are encoded once.
        """
        features = np.zeros((len(paths), self.dim), np.float32)
        has_feature = np.zeros(len(paths), bool)
        failures: list[tuple[str, str]] = []
        pending: dict[str, tuple[np.ndarray, list[int]]] = {}  # content hash -> (input, rows)
        done: dict[str, int] = {}  # content hash -> a row that already holds its features

        def flush() -> None:
            keys = list(pending)
            encoded = self.encode_preprocessed(np.stack([pending[k][0] for k in keys]))
            for key, vector in zip(keys, encoded, strict=True):
                rows = pending[key][1]
                features[rows] = vector
                has_feature[rows] = True
                done[key] = rows[0]
                if cache_dir is not None:
                    _save_atomic(self._cache_path(cache_dir, key), vector)
                bar.update(len(rows))
            pending.clear()

        with tqdm(total=len(paths), disable=not progress, unit="image", desc="image features") as bar:
            for row, path in enumerate(paths):
                if path is None:
                    bar.update()
                    continue
                try:
                    data = Path(path).read_bytes()
                except OSError as exc:
                    failures.append((str(path), f"cannot read the file: {exc.strerror or exc}"))
                    bar.update()
                    continue
                key = hashlib.sha256(data).hexdigest()
                if key in pending:
                    pending[key][1].append(row)
                    continue
                if key in done:
                    cached: np.ndarray | None = features[done[key]]
                else:
                    cached = (
                        None if cache_dir is None else self._load_cached(self._cache_path(cache_dir, key))
                    )
                if cached is not None:
                    features[row] = cached
                    has_feature[row] = True
                    bar.update()
                    continue
                try:
                    pending[key] = (preprocess(decode_image(data, self.max_pixels), self.spec), [row])
                except ImageError as exc:
                    failures.append((str(path), str(exc)))
                    bar.update()
                    continue
                if len(pending) >= self.batch_size:
                    flush()
            if pending:
                flush()
        return features, has_feature, failures

    def _load_cached(self, path: Path) -> np.ndarray | None:
        """Cached features, or None when absent or unusable (then they are recomputed and rewritten)."""
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if vector.shape != (self.dim,) or vector.dtype != np.float32:
            return None
        return vector


def _save_atomic(path: Path, vector: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:12]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vector)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
