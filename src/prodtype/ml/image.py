"""Image features: decode untrusted image bytes safely, preprocess them, and encode them with ONNX.

Two encoders ship in ``prodtype/assets/``, each an ONNX file with a JSON spec that declares its
preprocessing (:func:`preprocess` reads the constants from there, so the runtime cannot drift from them):

- ``lite0`` (``efficientnet_lite0_features``): EfficientNet-Lite0 with ImageNet weights, float32, exported by
  ``scripts/export_image_encoder.py``; input NCHW float32, normalised ``(x - 127) / 128``.
- ``lite0-int8`` (``efficientnet_lite0_int8``, the default): the same network quantised to int8 by
  ``scripts/quantize_image_encoder.py`` (static, per-channel weights in a 7-bit range so that CPUs without
  VNNI compute the same features as those with it, calibrated on product photos); the normalisation is
  inside the graph, so its input is the preprocessed photo as NHWC uint8. About 2.5 times faster than the
  float network on CPUs with VNNI, 1.1 times on AVX2 alone; its features agree with what its graph means on
  the CPU that runs it, and with the float model's (cosine ~0.96): the tests check both.

Features are the raw globally average-pooled activations (1280 values, all >= 0 after ReLU6), NOT
L2-normalised: scaling is the classifier's decision, and cached features stay valid whatever the head does.

Decoding is bounded in memory: the pixel count and the longest side are checked from the header before any
pixel is decoded, a JPEG is decoded at the smallest DCT scale that still gives the encoder enough pixels
(``decode_min_side`` in the spec), the pad-to-square of a non-square photo is computed on the 224-pixel
output rather than on the photo (a 40000x1000 banner never becomes a 40000x40000 canvas), and an encoder
lets only a bounded number of images be decoded at once.

No torch here: only onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from prodtype.ml.feature_store import FeatureStore, file_ident

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_ENCODER",
    "ENCODERS",
    "EncoderIntegrityError",
    "EncoderSpec",
    "ImageEncoder",
    "ImageError",
    "decode_image",
    "encoder_version",
    "load_spec",
    "preprocess",
    "spec_file",
    "spec_for_version",
]

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
# The encoders prodtype ships, by the name a training configuration uses.
ENCODERS: dict[str, Path] = {
    "lite0": ASSETS_DIR / "efficientnet_lite0_features.json",
    "lite0-int8": ASSETS_DIR / "efficientnet_lite0_int8.json",
}
DEFAULT_ENCODER = "lite0-int8"
DEFAULT_SPEC = ENCODERS["lite0"]
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 12_000
# Formats Pillow may parse here: the ones sellers upload (JPEG includes phones' multi-picture MPO files).
# Fewer parsers reachable from untrusted bytes.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# The one resize policy this code implements; a spec asking for another is refused rather than ignored.
RESIZE_POLICY = "pad_to_square_centre_crop_resize"
# Part of the encoder version: bump it when preprocess() changes its output for the same spec.
# 2: the pad to a square is computed on the output (edges of non-square photos differ by a filter's width),
# JPEGs may be decoded at a reduced DCT scale (decode_min_side).
PREPROCESS_REVISION = 2
_LAYOUTS = {("NCHW", "float32"), ("NHWC", "uint8")}


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
    layout: str  # "NCHW" (float32, normalised here) or "NHWC" (uint8, normalised in the graph)
    pad_colour: tuple[int, int, int]
    crop_fraction: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    decode_min_side: int | None  # JPEGs: decode at the smallest DCT scale keeping the long side >= this
    version: str

    @classmethod
    def from_file(cls, path: Path) -> EncoderSpec:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            pre = raw["preprocessing"]
            resize = pre["resize"]
            if (resize["policy"], resize["resample"], pre["channel_order"]) != (
                RESIZE_POLICY,
                "bicubic",
                "RGB",
            ) or (pre["layout"], pre["dtype"]) not in _LAYOUTS:
                raise EncoderIntegrityError(
                    f"{path} asks for resize policy {resize['policy']!r} ({resize['resample']}, "
                    f"{pre['channel_order']}, {pre['layout']} {pre['dtype']}); this code implements only "
                    f"{RESIZE_POLICY!r} (bicubic, RGB, NCHW float32 or NHWC uint8)"
                )
            identity = {"onnx_sha256": raw["onnx_sha256"], "preprocessing": pre, "rev": PREPROCESS_REVISION}
            digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
            min_side = pre.get("decode_min_side")
            return cls(
                path=path,
                name=str(raw["name"]),
                onnx_path=path.parent / raw["onnx_file"],
                onnx_sha256=str(raw["onnx_sha256"]),
                input_name=str(raw["input_name"]),
                output_name=str(raw["output_name"]),
                feature_dim=int(raw["feature_dim"]),
                input_size=int(pre["input_size"]),
                layout=str(pre["layout"]),
                pad_colour=_triple(resize["pad_colour"], int),
                crop_fraction=float(resize["crop_fraction"]),
                mean=_triple(pre["mean"], float),
                std=_triple(pre["std"], float),
                decode_min_side=int(min_side) if min_side is not None else None,
                version=f"{raw['name']}-{digest[:16]}",
            )
        except OSError as exc:
            raise EncoderIntegrityError(f"cannot read the image encoder spec {path}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise EncoderIntegrityError(
                f"{path} is not a valid encoder spec ({type(exc).__name__}: {exc}); "
                "re-create it with scripts/export_image_encoder.py"
            ) from exc

    def model_input(self, batch: np.ndarray) -> np.ndarray:
        """The ONNX input for preprocessed photos, (n, size, size, 3) uint8 as :func:`preprocess` gives."""
        if self.layout == "NHWC":
            return np.ascontiguousarray(batch, dtype=np.uint8)
        mean = np.array(self.mean, dtype=np.float32)
        scale = np.float32(1.0) / np.array(self.std, dtype=np.float32)
        normalised = (batch.astype(np.float32) - mean) * scale
        return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


def _triple(values: Any, kind: type) -> Any:
    if len(values) != 3:
        raise ValueError(f"expected 3 per-channel values, got {values!r}")
    return tuple(kind(v) for v in values)


@cache
def load_spec(path: Path | None = None) -> EncoderSpec:
    """The encoder spec at ``path`` (default: the float EfficientNet-Lite0's), read once per path."""
    return EncoderSpec.from_file(path or DEFAULT_SPEC)


def spec_file(name: str) -> Path:
    """The spec file of a packaged encoder, by its configuration name (``lite0``, ``lite0-int8``)."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown image encoder {name!r}; expected one of {', '.join(ENCODERS)}") from None


def encoder_version(spec: Path | str | None = None) -> str:
    """Identity of the image features, e.g. ``efficientnet_lite0_int8-1a2b3c4d5e6f7a8b``.

    ``spec`` is a packaged encoder's name, a spec file, or None for the default encoder. The version is a
    digest of the ONNX file's sha256, the preprocessing constants and :data:`PREPROCESS_REVISION`: it
    changes whenever the same image could get different features. It is the feature cache's namespace and
    is recorded in model bundles (a classifier trained on one version must not be served with another).
    Reads only the JSON; :class:`ImageEncoder` checks the ONNX file against it when it loads.
    """
    if spec is None or isinstance(spec, str):
        return load_spec(spec_file(spec or DEFAULT_ENCODER)).version
    return load_spec(spec).version


def spec_for_version(version: str) -> Path | None:
    """The spec file of the packaged encoder with this version, or None when no packaged one has it."""
    for path in ENCODERS.values():
        with contextlib.suppress(EncoderIntegrityError):
            if load_spec(path).version == version:
                return path
    return None


def decode_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    min_side: int | None = None,
) -> Image.Image:
    """Decode untrusted image bytes to a fully loaded RGB image, upright per its EXIF orientation.

    Refuses (with :class:`ImageError`) an empty payload, bytes that are not an image of
    :data:`ACCEPTED_FORMATS`, an image whose header declares more than ``max_pixels`` pixels or a side
    longer than ``max_side`` (checked before any pixel is decoded, whatever Pillow's global
    ``MAX_IMAGE_PIXELS``), and a corrupt or truncated file (the pixels are fully decoded here; relies on
    Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False``). With ``min_side``, a JPEG is decoded at
    the smallest DCT scale (1/2, 1/4, 1/8) whose longest side is still at least ``min_side`` pixels.
    Transparency is composited on white; palette, greyscale, 16-bit and CMYK become RGB (ICC profiles are
    not applied). Animated images give their first frame.
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
    if max(width, height) > max_side:
        raise ImageError(
            f"{img.format} image declares {width}x{height} pixels; a side may be at most {max_side:,} "
            "pixels long (checked before decoding)"
        )
    if min_side is not None and img.format == "JPEG" and max(width, height) >= 2 * min_side:
        longest = max(width, height)
        request = (
            max(1, math.ceil(min_side * width / longest)),
            max(1, math.ceil(min_side * height / longest)),
        )
        with contextlib.suppress(Exception):  # draft is an optimisation: a failure just decodes in full
            img.draft("RGB", request)
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
    """The encoder's view of one photo: uint8 (size, size, 3) RGB (see :meth:`EncoderSpec.model_input`).

    As if the photo were padded to a square with the pad colour (white), the centre ``crop_fraction`` of
    that square cropped and resized to ``input_size`` with Pillow's bicubic filter. The padding is never
    materialised: the part of the photo inside the crop is resized to its place in the output and pasted on
    an output-sized canvas, so memory does not grow with the square of a long side.
    """
    spec = spec or load_spec()
    img = _to_rgb(img)
    size = spec.input_size
    width, height = img.size
    side = max(width, height)
    crop = side * spec.crop_fraction
    # the crop box in the photo's coordinates (it reaches into the padding when the photo is not square)
    left = (side - crop) / 2 - (side - width) / 2
    top = (side - crop) / 2 - (side - height) / 2
    scale = size / crop
    x0, y0 = max(0.0, left), max(0.0, top)
    x1, y1 = min(float(width), left + crop), min(float(height), top + crop)
    out_x0, out_x1 = round((x0 - left) * scale), round((x1 - left) * scale)
    out_y0, out_y1 = round((y0 - top) * scale), round((y1 - top) * scale)
    if (out_x0, out_y0, out_x1, out_y1) == (0, 0, size, size):
        out = img.resize((size, size), Image.Resampling.BICUBIC, box=(x0, y0, x1, y1))
    else:
        out = Image.new("RGB", (size, size), spec.pad_colour)
        part_size = (max(1, out_x1 - out_x0), max(1, out_y1 - out_y0))
        out.paste(img.resize(part_size, Image.Resampling.BICUBIC, box=(x0, y0, x1, y1)), (out_x0, out_y0))
    return np.asarray(out, dtype=np.uint8)


def _session_options(threads: int) -> Any:
    import onnxruntime as ort  # heavy: imported when an encoder is built, never at import time

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads must not spin: on a small machine they would take the core from the request
    # threads, the text branch and the other worker process (measured: 2-3x slower under concurrency).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class ImageEncoder:
    """An image encoder through onnxruntime: bytes or files in, (n, 1280) float32 out.

    ``threads`` sets onnxruntime's intra-op threads (inter-op is 1); default: the CPUs this process may use.
    ``batch_size`` images go through the network at once: 8 to 16 is the fastest per image here (3.8 ms with
    two threads against 5.1 ms one at a time); 32 is slower again (5.5 ms: activations leave the cache).
    Encoding is thread-safe (onnxruntime sessions are), so one encoder can serve concurrent requests; at most
    ``max_decodes`` images are decoded at once (default: ``threads``), which bounds the memory that
    concurrent uploads can take.
    """

    def __init__(
        self,
        threads: int | None = None,
        batch_size: int = 16,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        spec_path: Path | None = None,
        *,
        name: str | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
        max_decodes: int | None = None,
    ) -> None:
        threads = len(os.sched_getaffinity(0)) if threads is None else threads
        max_decodes = threads if max_decodes is None else max_decodes
        if min(threads, batch_size, max_pixels, max_side, max_decodes) < 1:
            raise ValueError(
                f"threads, batch_size, max_pixels, max_side and max_decodes must be >= 1 (got {threads}, "
                f"{batch_size}, {max_pixels}, {max_side}, {max_decodes})"
            )
        self.spec = load_spec(spec_path if spec_path is not None else spec_file(name or DEFAULT_ENCODER))
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.max_side = max_side
        self._decodes = threading.BoundedSemaphore(max_decodes)
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
        import onnxruntime as ort

        self._session = ort.InferenceSession(
            model, sess_options=_session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.threads = threads

    @property
    def dim(self) -> int:
        return self.spec.feature_dim

    @property
    def version(self) -> str:
        """See :func:`encoder_version`."""
        return self.spec.version

    @contextlib.contextmanager
    def _decode_slot(self) -> Iterator[None]:
        with self._decodes:
            yield

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode and preprocess one image (uint8 (size, size, 3)); :class:`ImageError` if unusable.

        Thread-safe; Pillow releases the GIL while it decodes and resizes, so request threads can prepare
        photos in parallel while the model runs."""
        with self._decode_slot():
            img = decode_image(
                data, self.max_pixels, max_side=self.max_side, min_side=self.spec.decode_min_side
            )
            return preprocess(img, self.spec)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Features for preprocessed images, (n, size, size, 3) uint8 -> (n, dim) float32."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self._session.run(
                [self.spec.output_name],
                {self.spec.input_name: self.spec.model_input(batch[i : i + self.batch_size])},
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
                arrays.append(self.prepare(data))
            except ImageError as exc:
                if len(items) == 1:
                    raise
                raise ImageError(f"image {i} of {len(items)}: {exc}") from exc
        if not arrays:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_preprocessed(np.stack(arrays))

    def feature_store(self, cache_dir: Path) -> FeatureStore:
        """The store in which :meth:`encode_files` caches this encoder's features (namespace: its version)."""
        return FeatureStore(Path(cache_dir), self.version, self.dim)

    @staticmethod
    def cache_key(data: bytes) -> str:
        """The feature cache's key of an image with these bytes."""
        return hashlib.sha256(data).hexdigest()

    def encode_files(
        self,
        paths: Sequence[str | os.PathLike[str] | None],
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Features of image files: ``(features (n, dim) float32, has_feature (n,) bool, failures)``.

        A ``None`` path gives a zero row with ``has_feature`` False; so does a file that cannot be read or
        decoded, which is also listed in ``failures`` as ``(path, reason)`` instead of raising. With
        ``cache_dir``, features are stored in ``cache_dir/features.sqlite`` (:mod:`prodtype.ml.feature_store`,
        namespace: the encoder's version, key: the sha256 of the file's bytes; one transaction per encoded
        batch) and read back on later calls, so unchanged images are encoded once.
        Identical files within one call are encoded once. Files are read and decoded by ``threads`` worker
        threads, a window ahead of the encoder, so that decoding and encoding overlap.
        """
        features = np.zeros((len(paths), self.dim), np.float32)
        has_feature = np.zeros(len(paths), bool)
        failures: list[tuple[str, str]] = []
        pending: dict[str, tuple[np.ndarray, list[int]]] = {}  # content hash -> (input, rows)
        done: dict[str, int] = {}  # content hash -> a row that already holds its features
        store = None if cache_dir is None else self.feature_store(cache_dir)

        def flush() -> None:
            keys = list(pending)
            encoded = self.encode_preprocessed(np.stack([pending[k][0] for k in keys]))
            for key, vector in zip(keys, encoded, strict=True):
                rows = pending[key][1]
                features[rows] = vector
                has_feature[rows] = True
                done[key] = rows[0]
                bar.update(len(rows))
            if store is not None:
                store.put_many(zip(keys, encoded, strict=True))
                known_now.extend((ident, key) for key in keys for ident in idents.pop(key, []))
            pending.clear()

        # (file identity, content hash) of files read whose features are stored, to record; identities of
        # files read whose features are still to be computed, by content hash
        known_now: list[tuple[str, str]] = []
        idents: dict[str, list[str]] = {}

        def load(path: str | os.PathLike[str] | None) -> _Loaded:
            if path is None:
                return _Loaded()
            ident = None if store is None else file_ident(path)
            if store is not None and ident is not None:  # seen unchanged before: no need to read it
                known = store.digest_of(ident)
                cached = None if known is None else store.get(known)
                if known is not None and cached is not None:
                    return _Loaded(known, cached=cached)
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                return _Loaded(error=f"cannot read the file: {exc.strerror or exc}")
            key = hashlib.sha256(data).hexdigest()
            cached = None if store is None else store.get(key)
            if ident is not None:
                if cached is not None:
                    known_now.append((ident, key))
                else:
                    idents.setdefault(key, []).append(ident)
            if cached is not None:
                return _Loaded(key, cached=cached)
            try:
                return _Loaded(key, pixels=self.prepare(data))
            except ImageError as exc:
                return _Loaded(key, error=str(exc))

        window = max(4 * self.batch_size, 64)
        with (
            tqdm(total=len(paths), disable=not progress, unit="image", desc="image features") as bar,
            ThreadPoolExecutor(self.threads, thread_name_prefix="image-decode") as pool,
        ):
            ahead: deque[list[Future[_Loaded]]] = deque()
            starts = iter(range(0, len(paths), window))
            for _ in range(2):  # the window being encoded and the next one, being decoded
                start = next(starts, None)
                if start is not None:
                    ahead.append([pool.submit(load, p) for p in paths[start : start + window]])
            row = 0
            while ahead:
                futures = ahead.popleft()
                start = next(starts, None)
                if start is not None:
                    ahead.append([pool.submit(load, p) for p in paths[start : start + window]])
                for future in futures:
                    loaded = future.result()
                    self._take(loaded, row, paths[row], features, has_feature, failures, pending, done, bar)
                    row += 1
                    if len(pending) >= self.batch_size:
                        flush()
                if store is not None and known_now:  # one transaction a window
                    store.put_digests([known_now.pop() for _ in range(len(known_now))])
            if pending:
                flush()
            if store is not None:
                store.put_digests(known_now)
        if store is not None:
            store.close()
        return features, has_feature, failures

    @staticmethod
    def _take(
        loaded: _Loaded,
        row: int,
        path: str | os.PathLike[str] | None,
        features: np.ndarray,
        has_feature: np.ndarray,
        failures: list[tuple[str, str]],
        pending: dict[str, tuple[np.ndarray, list[int]]],
        done: dict[str, int],
        bar: Any,
    ) -> None:
        """Put one loaded file where it belongs: a failure, its features, or the batch to encode."""
        key = loaded.key
        if loaded.error is not None:
            failures.append((str(path), loaded.error))
        elif key is None:  # no photo
            pass
        elif key in pending:
            pending[key][1].append(row)
            return
        elif key in done or loaded.cached is not None:
            features[row] = features[done[key]] if key in done else loaded.cached
            has_feature[row] = True
        elif loaded.pixels is not None:
            pending[key] = (loaded.pixels, [row])
            return
        bar.update()


@dataclass(frozen=True)
class _Loaded:
    """One file as a decoding thread left it: its content hash and cached features, its preprocessed
    pixels, or why it cannot be used; all None for a product without a photo."""

    key: str | None = None
    cached: np.ndarray | None = None
    pixels: np.ndarray | None = None
    error: str | None = None
