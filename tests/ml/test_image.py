"""Image decoding, preprocessing and the ONNX encoder, on real product photos from the sample."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodtype.ml.feature_store import file_ident
from prodtype.ml.image import (
    DEFAULT_SPEC,
    EncoderIntegrityError,
    ImageEncoder,
    ImageError,
    decode_image,
    encoder_version,
    load_spec,
    preprocess,
    spec_file,
    spec_for_version,
)

WHITE = 255
BLACK = 0


@pytest.fixture(scope="module")
def photo_paths(data_dir: Path) -> list[Path]:
    paths = sorted((data_dir / "image_train").glob("*.jpg"))[:4]
    assert len(paths) == 4, f"expected JPEGs in {data_dir / 'image_train'}"
    return paths


@pytest.fixture(scope="module")
def photo(photo_paths: list[Path]) -> bytes:
    return photo_paths[0].read_bytes()


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    return ImageEncoder(threads=2)


def encode_as(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny well-formed PNG whose header announces width x height RGB pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# -- decode_image ----------------------------------------------------------------------------------


def test_decodes_a_real_photo_to_loaded_rgb(photo: bytes) -> None:
    img = decode_image(photo)
    assert img.mode == "RGB"
    assert img.size == (500, 500)
    assert np.asarray(img).std() > 10  # real content, not a blank canvas


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        *[("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("1", "PNG")],
        *[("I;16", "PNG"), ("RGB", "PNG"), ("RGB", "WEBP"), ("P", "GIF"), ("RGB", "BMP"), ("RGB", "TIFF")],
    ],
)
def test_decodes_colour_modes_and_formats(photo: bytes, mode: str, fmt: str) -> None:
    source = Image.open(io.BytesIO(photo)).convert("RGB").resize((120, 90))
    if mode == "I;16":
        converted = Image.fromarray((np.asarray(source.convert("L"), np.uint16) * 257).astype(np.uint16))
    else:
        converted = source.convert(mode)
    img = decode_image(encode_as(converted, fmt))
    assert (img.mode, img.size) == ("RGB", (120, 90))
    grey = np.asarray(img, np.float64).mean(axis=2)
    expected = np.asarray(source.convert("L"), np.float64)
    # same picture (a bilevel image only roughly: it is dithered)
    assert np.corrcoef(grey.ravel(), expected.ravel())[0, 1] > (0.5 if mode == "1" else 0.95)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    img = decode_image(encode_as(Image.fromarray(ramp), "PNG"))
    values = np.asarray(img)[..., 0]
    assert values[0, 0] == 0 and values[0, -1] == 255 and 120 < values[0, 32] < 135


def test_transparency_becomes_white() -> None:
    clear = Image.new("RGBA", (20, 10), (200, 0, 0, 0))
    assert (np.asarray(decode_image(encode_as(clear, "PNG"))) == 255).all()
    palette = Image.new("P", (20, 10), 0)
    palette.putpalette([10, 20, 30] * 256)
    palette.info["transparency"] = 0
    assert (np.asarray(decode_image(encode_as(palette, "PNG", transparency=0))) == 255).all()


def test_exif_orientation_is_applied(photo: bytes) -> None:
    wide = Image.open(io.BytesIO(photo)).convert("RGB").resize((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turned 90 degrees clockwise
    img = decode_image(encode_as(wide, "JPEG", exif=exif))
    assert img.size == (200, 300)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "empty image payload"),
        (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "not a recognised image"),
        (b"designation,description\nmug,blue\n" * 40, "not a recognised image"),
        (png_claiming(100_000, 100_000), "at most 40,000,000 pixels"),  # beyond Pillow's own bomb limit
        (png_claiming(8_000, 8_000), "declares 8000x8000 = 64,000,000 pixels"),  # within Pillow's limit
    ],
    ids=["empty", "random-bytes", "text-file", "bomb-100000x100000", "bomb-8000x8000"],
)
def test_unusable_payloads_raise_image_error(payload: bytes, expected: str) -> None:
    with pytest.raises(ImageError, match=expected):
        decode_image(payload)


@pytest.mark.parametrize("keep", [1 / 3, 0.9, -2], ids=["third", "most", "no-end-marker"])
def test_truncated_jpeg_raises_image_error(photo: bytes, keep: float) -> None:
    cut = photo[: int(len(photo) * keep)] if keep > 0 else photo[: int(keep)]
    with pytest.raises(ImageError, match=r"corrupt or truncated JPEG image \(500x500.*truncated"):
        decode_image(cut)


def test_max_pixels_is_checked_on_real_images(photo: bytes) -> None:
    with pytest.raises(ImageError, match="500x500 = 250,000 pixels; at most 249,999"):
        decode_image(photo, max_pixels=249_999)
    assert decode_image(photo, max_pixels=250_000).size == (500, 500)


def test_image_error_is_a_value_error() -> None:
    assert issubclass(ImageError, ValueError)


# -- preprocess ------------------------------------------------------------------------------------


def test_preprocess_shape_dtype_and_range(photo: bytes) -> None:
    x = preprocess(decode_image(photo))
    assert x.shape == (224, 224, 3)
    assert x.dtype == np.uint8
    assert x.flags.c_contiguous
    assert x.std() > 10


def test_float_encoder_input_follows_the_spec_constants() -> None:
    spec = load_spec()
    assert spec.mean == (127.0, 127.0, 127.0) and spec.std == (128.0, 128.0, 128.0)
    x = spec.model_input(np.stack([preprocess(Image.new("RGB", (500, 500), "white"))]))
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.allclose(x, (255 - 127) / 128)
    assert np.allclose(spec.model_input(np.zeros((1, 224, 224, 3), np.uint8)), (0 - 127) / 128)
    # the quantised encoder normalises inside its graph: it takes the pixels as they are
    int8 = load_spec(spec_file("lite0-int8"))
    pixels = np.stack([preprocess(Image.new("RGB", (37, 37), "black"), int8)])
    assert int8.model_input(pixels).dtype == np.uint8 and (int8.model_input(pixels) == 0).all()


def test_preprocess_follows_the_spec_constants() -> None:
    assert (preprocess(Image.new("RGB", (500, 500), "white")) == WHITE).all()
    assert (preprocess(Image.new("RGB", (37, 37), "black")) == BLACK).all()
    # the centre crop keeps the middle 7/8: on a 512-pixel square it starts 32 pixels in, so a 24-pixel
    # black frame is cut away (the bicubic filter reaches a few pixels beyond the box), a 40-pixel one is not
    for frame, seen in ((24, False), (40, True)):
        img = Image.new("RGB", (512, 512), "black")
        img.paste((255, 255, 255), (frame, frame, 512 - frame, 512 - frame))
        x = preprocess(img)
        assert (x[112, 112] == WHITE).all()
        assert (not (x[0, :] == WHITE).all()) == seen


def test_preprocess_pads_non_square_images_with_white() -> None:
    x = preprocess(Image.new("RGB", (400, 100), "black"))  # black band across the middle
    assert (x[0, :] == WHITE).all() and (x[-1, :] == WHITE).all()
    assert (x[112, :] == BLACK).all()
    # the band is as high as the photo is in the padded square's crop: 100 / (400 * 7/8) * 224 = 64 rows
    assert 62 <= int((x[:, 112] == BLACK).all(axis=1).sum()) <= 66


def test_preprocess_of_a_long_thin_photo_is_the_padded_square_without_making_it(photo: bytes) -> None:
    """A 40000x1000 banner was padded to a 40000x40000 canvas (6.4 GB) before resizing; now the output is
    computed from the photo alone and equals what the padding would give, up to the filter's edge."""
    band = Image.open(io.BytesIO(photo)).convert("RGB").resize((800, 50))
    padded = Image.new("RGB", (800, 800), (255, 255, 255))
    padded.paste(band, (0, 375))
    expected = preprocess(padded).astype(int)
    got = preprocess(band).astype(int)
    diff = np.abs(got - expected)
    # the band covers rows 104..120 of the output (50 / 700 * 224 = 16 rows); only the filter's reach
    # around the band's edges differs (the photo's edge pixels are repeated instead of mixed with white)
    rows = np.arange(224)
    away = (np.abs(rows - 104) > 3) & (np.abs(rows - 120) > 3)
    assert diff[away].max() <= 2
    assert diff.mean() < 1.0


PEAK_OF_PREPARE = """
import io, resource, sys
from PIL import Image
from prodtype.ml.image import ImageEncoder
encoder = ImageEncoder(threads=1)
buf = io.BytesIO()
Image.new("RGB", (int(sys.argv[1]), int(sys.argv[2])), (30, 30, 30)).save(buf, format="PNG")
data = buf.getvalue()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
encoder.prepare(data)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_long_thin_images_decode_within_bounded_memory() -> None:
    """The 12000x1000 PNG of the attack review cost +543 MiB (padded to a 12000x12000 square first) and a
    40000x1000 one a MemoryError; now the peak is the photo's own pixels (36 MB), in a fresh process."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", PEAK_OF_PREPARE, "12000", "1000"], capture_output=True, text=True, check=True
    )
    assert int(run.stdout.strip()) < 150, f"decoding a 12000x1000 PNG raised the peak by {run.stdout} MiB"
    with pytest.raises(ImageError, match="a side may be at most 12,000 pixels"):
        ImageEncoder(threads=1).prepare(encode_as(Image.new("L", (40_000, 10), 0), "PNG"))


def test_jpeg_is_decoded_at_a_reduced_scale_when_the_encoder_needs_fewer_pixels(photo: bytes) -> None:
    assert decode_image(photo).size == (500, 500)
    assert decode_image(photo, min_side=224).size == (250, 250)  # DCT scaling by 1/2
    assert decode_image(photo, min_side=300).size == (500, 500)  # 1/2 would give fewer than 300
    wide = encode_as(Image.open(io.BytesIO(photo)).convert("RGB").resize((2000, 400)), "JPEG")
    assert decode_image(wide, min_side=224).size == (250, 50)  # 1/8: the long side still >= 224


def test_encoder_bounds_the_images_decoded_at_once(photo: bytes) -> None:
    import threading

    encoder = ImageEncoder(threads=1, max_decodes=2)
    inside, most, lock = 0, 0, threading.Lock()
    real = encoder._decode_slot

    def counting():  # type: ignore[no-untyped-def]
        import contextlib

        @contextlib.contextmanager
        def slot():  # type: ignore[no-untyped-def]
            nonlocal inside, most
            with real():
                with lock:
                    inside += 1
                    most = max(most, inside)
                try:
                    yield
                finally:
                    with lock:
                        inside -= 1

        return slot()

    encoder._decode_slot = counting  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                encoder.prepare(photo)
        except BaseException as exc:  # collected: an exception in a thread is only a warning to pytest
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert most == 2  # the six threads overlapped, but never more than two decodes at once


# -- the encoder -----------------------------------------------------------------------------------


def test_encoder_outputs_raw_pooled_features(encoder: ImageEncoder, photo: bytes) -> None:
    vector = encoder.encode_bytes(photo)
    assert vector.shape == (encoder.dim,) == (1280,)
    assert vector.dtype == np.float32
    assert vector.min() >= 0 and vector.max() <= 6  # ReLU6 activations, averaged; not normalised
    assert abs(float(np.linalg.norm(vector)) - 1) > 0.1


def test_batches_agree_with_single_images(encoder: ImageEncoder, photo_paths: list[Path]) -> None:
    payloads = [p.read_bytes() for p in photo_paths]
    batch = encoder.encode_batch(payloads)
    assert batch.shape == (4, 1280) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[2], encoder.encode_bytes(payloads[2]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(batch[0], batch[1])
    assert encoder.encode_batch([]).shape == (0, 1280)


def test_batch_error_names_the_bad_item(encoder: ImageEncoder, photo: bytes) -> None:
    with pytest.raises(ImageError, match="image 1 of 2: empty image payload"):
        encoder.encode_batch([photo, b""])


def test_encoder_version_names_the_encoder(encoder: ImageEncoder) -> None:
    assert encoder.version == encoder_version() == encoder_version("lite0-int8")
    assert encoder.version.startswith("efficientnet_lite0_int8-") and len(encoder.version) == 40
    assert encoder_version("lite0").startswith("efficientnet_lite0_features-")
    assert spec_for_version(encoder_version("lite0")) == spec_file("lite0")
    assert spec_for_version("efficientnet_lite0_features-0000000000000000") is None


def test_encode_files_lists_failures_and_fills_rows(
    encoder: ImageEncoder, photo_paths: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo_paths[0].read_bytes()[:5000])
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture\n")
    missing = tmp_path / "missing.jpg"
    paths = [str(photo_paths[0]), None, str(broken), str(text), str(missing), str(photo_paths[1])]

    features, has_feature, failures = encoder.encode_files(paths)

    assert features.shape == (6, 1280) and features.dtype == np.float32
    assert has_feature.tolist() == [True, False, False, False, False, True]
    assert not features[~has_feature].any()
    reasons = dict(failures)
    assert list(reasons) == [str(broken), str(text), str(missing)]
    assert "truncated" in reasons[str(broken)]
    assert "not a recognised image" in reasons[str(text)]
    assert "cannot read the file" in reasons[str(missing)]
    np.testing.assert_allclose(
        features[5], encoder.encode_bytes(photo_paths[1].read_bytes()), rtol=1e-4, atol=1e-5
    )


def test_encode_files_cache(encoder: ImageEncoder, photo_paths: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    images = tmp_path / "images"
    images.mkdir()
    copies = [shutil.copy(p, images / p.name) for p in photo_paths[:3]]
    paths = [*copies, copies[0]]  # a duplicate row is served from the same features

    first, mask, failures = encoder.encode_files(paths, cache_dir=cache, progress=True)
    assert mask.all() and not failures
    np.testing.assert_array_equal(first[3], first[0])
    keys = [encoder.cache_key(Path(p).read_bytes()) for p in copies]
    store = encoder.feature_store(cache)
    assert store.namespace == encoder.version  # a new encoder gets a new namespace
    assert sorted(store.keys()) == sorted(keys)  # one entry per distinct content
    assert [p.name for p in cache.iterdir() if not p.name.startswith("features.sqlite")] == []  # one file
    np.testing.assert_array_equal(store.get(keys[1]), first[1])

    second, mask, _ = encoder.encode_files(paths, cache_dir=cache)
    assert mask.all()
    np.testing.assert_array_equal(second, first)

    # the second call reads the cache: a planted value comes back instead of a recomputed one
    planted = np.full(1280, 0.5, np.float32)
    store.put(keys[1], planted)
    third, _, _ = encoder.encode_files(paths, cache_dir=cache)
    np.testing.assert_array_equal(third[1], planted)

    # a damaged cache entry (wrong length) is recomputed and rewritten
    with sqlite3.connect(cache / "features.sqlite") as conn:
        conn.execute("UPDATE features SET vector = ? WHERE key = ?", (b"garbage", keys[2]))
    fourth, _, _ = encoder.encode_files(paths, cache_dir=cache)
    np.testing.assert_array_equal(fourth[2], first[2])
    np.testing.assert_array_equal(store.get(keys[2]), first[2])

    # the key is the file's content: a changed file gets a new entry, not the old features
    edited = Path(copies[0])
    img = Image.open(edited).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img.save(edited, format="JPEG", quality=90)
    new_key = encoder.cache_key(edited.read_bytes())
    assert new_key != keys[0] and store.get(new_key) is None
    fifth, _, _ = encoder.encode_files([edited], cache_dir=cache)
    assert store.get(new_key) is not None
    assert not np.allclose(fifth[0], first[0])
    store.close()


def _bytes_read() -> int:
    """Bytes this process has read through read() so far (Linux's /proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _noise_jpeg(seed: int, side: int = 1200) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_an_unchanged_file_is_not_read_again_and_a_changed_one_always_is(
    encoder: ImageEncoder, tmp_path: Path
) -> None:
    cache, photo = tmp_path / "cache", tmp_path / "photo.jpg"
    a, b = _noise_jpeg(1), _noise_jpeg(2)
    size = max(len(a), len(b))
    a, b = a.ljust(size, b"\0"), b.ljust(size, b"\0")  # same length: JPEG readers stop at the end marker
    photo.write_bytes(a)
    first, _, _ = encoder.encode_files([photo], cache_dir=cache)
    store = encoder.feature_store(cache)
    assert store.digest_of(str(file_ident(photo))) == encoder.cache_key(a)

    before = _bytes_read()
    again, mask, _ = encoder.encode_files([photo], cache_dir=cache)
    read = _bytes_read() - before
    assert mask.all() and np.array_equal(again, first)
    assert read < size // 4, f"{read} bytes read for a {size}-byte photo that did not change"

    # other content of the same size, with the modification time set back: the change time still differs
    stat = photo.stat()
    photo.write_bytes(b)
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert photo.stat().st_size == stat.st_size and photo.stat().st_mtime_ns == stat.st_mtime_ns
    changed, _, _ = encoder.encode_files([photo], cache_dir=cache)
    np.testing.assert_allclose(changed[0], encoder.encode_bytes(b), rtol=1e-4, atol=1e-5)
    assert not np.allclose(changed[0], first[0])
    store.close()


def test_encode_files_reads_the_old_per_file_cache(
    encoder: ImageEncoder, photo_paths: list[Path], tmp_path: Path
) -> None:
    """A cache folder of the old layout (one .npy per image) keeps serving: entries are migrated on use."""
    cache = tmp_path / "cache"
    data = photo_paths[0].read_bytes()
    key = encoder.cache_key(data)
    planted = np.full(1280, 0.25, np.float32)
    old = cache / encoder.version / key[:2] / f"{key}.npy"
    old.parent.mkdir(parents=True)
    np.save(old, planted)
    features, mask, _ = encoder.encode_files([photo_paths[0], photo_paths[1]], cache_dir=cache)
    assert mask.all()
    np.testing.assert_array_equal(features[0], planted)  # read from the old file, not recomputed
    with encoder.feature_store(cache) as store:
        np.testing.assert_array_equal(store.get_many([key])[key], planted)  # and now in the store
        assert len(store) == 2


def test_spec_changes_change_the_version(tmp_path: Path) -> None:
    raw = json.loads(DEFAULT_SPEC.read_text())
    raw["preprocessing"]["resize"]["crop_fraction"] = 1.0
    changed = tmp_path / "spec.json"
    changed.write_text(json.dumps(raw))
    assert encoder_version(changed) != encoder_version()


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    raw = json.loads(DEFAULT_SPEC.read_text())
    (tmp_path / raw["onnx_file"]).symlink_to(DEFAULT_SPEC.parent / raw["onnx_file"])
    raw["onnx_sha256"] = "0" * 64
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(raw))
    with pytest.raises(
        EncoderIntegrityError, match=r"has sha256 [0-9a-f]{64}, but .*spec.json expects 0{64}"
    ):
        ImageEncoder(spec_path=spec)


def test_unknown_resize_policy_is_refused(tmp_path: Path) -> None:
    raw = json.loads(DEFAULT_SPEC.read_text())
    raw["preprocessing"]["resize"]["policy"] = "letterbox"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(raw))
    with pytest.raises(EncoderIntegrityError, match=r"'letterbox'.*implements only"):
        load_spec(spec)


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        ImageEncoder(threads=0)
