"""Photos carrying what sellers would not want reviewers to see: EXIF with GPS position, camera serial and
author, XMP, IPTC, a comment, and a second picture appended after the end marker."""

from __future__ import annotations

import functools
import io
import struct

from PIL import Image, ImageCms

from service_support.images import photo

GPS_IFD = 0x8825
ORIENTATION = 0x0112
SECRETS = (b"Canon", b"SERIAL-0042", b"Jeanne Dupont", b"rue des Lilas", b"photographer-notes")


def personal_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "Canon"  # Make
    exif[0xA431] = "SERIAL-0042"  # BodySerialNumber
    exif[0x013B] = "Jeanne Dupont"  # Artist
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    return exif.tobytes()


@functools.cache
def icc_profile() -> bytes:
    """One sRGB profile for the whole run: lcms stamps a profile with the second it was made, so two calls
    across a second boundary differ (a flaky comparison once did)."""
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>Jeanne Dupont, rue des Lilas</dc:creator></x:xmpmeta>'


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def personal_jpeg(orientation: int = 6) -> bytes:
    """A real product photo re-saved with EXIF (GPS, serial, artist), XMP, a comment and an ICC profile,
    plus an IPTC segment and a second picture with its own EXIF appended after the end marker."""
    out = io.BytesIO()
    Image.open(io.BytesIO(photo(0))).save(
        out,
        "JPEG",
        quality=90,
        exif=personal_exif(orientation),
        icc_profile=icc_profile(),
        comment=b"photographer-notes",
        xmp=XMP,
    )
    data = out.getvalue()
    iptc = _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10rue des Lilas....")
    thumbnail = io.BytesIO()
    Image.new("RGB", (8, 8)).save(thumbnail, "JPEG", exif=personal_exif())
    return data[:2] + iptc + data[2:] + thumbnail.getvalue()
