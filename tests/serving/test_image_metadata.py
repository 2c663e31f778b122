"""Photos lose their personal metadata (EXIF with GPS, XMP, IPTC, comments, text chunks) without their
pixels being touched: colour profile and orientation stay, and the model sees the same picture."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from prodtype.ml.image import decode_image
from prodtype.serving.image_metadata import exif_orientation, minimal_exif, strip_metadata
from service_support.images import photo
from service_support.personal_photos import (
    GPS_IFD,
    ORIENTATION,
    SECRETS,
    XMP,
    icc_profile,
    personal_exif,
    personal_jpeg,
)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def assert_clean(stripped: bytes, original: bytes, orientation: int) -> Image.Image:
    img = Image.open(io.BytesIO(stripped))
    for secret in SECRETS:
        assert secret not in stripped, secret
    assert dict(img.getexif()) == ({ORIENTATION: orientation} if orientation != 1 else {})
    assert not img.getexif().get_ifd(GPS_IFD)
    assert "xmp" not in img.info and "comment" not in img.info
    assert img.info.get("icc_profile") == icc_profile()  # the colour profile stays
    np.testing.assert_array_equal(pixels(stripped), pixels(original))  # not re-encoded
    np.testing.assert_array_equal(np.asarray(decode_image(stripped)), np.asarray(decode_image(original)))
    return img


@pytest.mark.parametrize("orientation", [6, 1])
def test_jpeg_keeps_pixels_profile_and_orientation_only(orientation: int) -> None:
    original = personal_jpeg(orientation)
    assert all(secret in original for secret in SECRETS)  # the fixture does carry them
    stripped = strip_metadata(original, "image/jpeg")
    assert_clean(stripped, original, orientation)
    assert stripped.endswith(b"\xff\xd9") and len(stripped) < len(original)


def test_progressive_jpeg_keeps_every_scan() -> None:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo(1))).save(
        out, "JPEG", progressive=True, exif=personal_exif(3), icc_profile=icc_profile(), comment=b"Canon"
    )
    stripped = strip_metadata(out.getvalue(), "image/jpeg")
    assert_clean(stripped, out.getvalue(), 3)


def test_png_loses_text_time_and_exif_chunks() -> None:
    info = PngInfo()
    info.add_text("Author", "Jeanne Dupont")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Comment", "photographer-notes", zip=True)
    out = io.BytesIO()
    Image.open(io.BytesIO(photo(2))).save(
        out, "PNG", pnginfo=info, exif=personal_exif(8), icc_profile=icc_profile()
    )
    original = out.getvalue()
    stripped = strip_metadata(original, "image/png")
    img = assert_clean(stripped, original, 8)
    assert not img.text  # type: ignore[attr-defined]


@pytest.mark.parametrize("orientation", [5, 1])
def test_webp_loses_exif_and_xmp_chunks_and_their_flags(orientation: int) -> None:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo(3))).save(
        out, "WEBP", quality=80, exif=personal_exif(orientation), icc_profile=icc_profile(), xmp=XMP
    )
    original = out.getvalue()
    stripped = strip_metadata(original, "image/webp")
    assert_clean(stripped, original, orientation)
    flags = stripped[20]  # the VP8X chunk's flags byte
    assert stripped[12:16] == b"VP8X" and not flags & 0x04 and bool(flags & 0x08) == (orientation != 1)
    assert struct.unpack_from("<I", stripped, 4)[0] == len(stripped) - 8


def test_a_file_without_metadata_comes_back_identical() -> None:
    assert strip_metadata(photo(4), "image/jpeg") == photo(4)


def test_orientation_reader_tolerates_damaged_exif() -> None:
    assert exif_orientation(minimal_exif(7)) == 7
    assert exif_orientation(b"Exif\x00\x00" + minimal_exif(2)) == 2
    for damaged in (b"", b"II*\x00", b"MM\x00*\x00\x00\xff\xff", b"XX" + minimal_exif(3)[2:]):
        assert exif_orientation(damaged) == 1
