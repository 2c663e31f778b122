"""Removing what a photo says about its owner (EXIF with GPS position, XMP, IPTC, comments), losslessly.

Sellers' photos reach every reviewer; the metadata inside them (where and when the picture was taken, the
camera's serial number, the author's name) must not. The pixels are never re-encoded: the file is walked
segment by segment (JPEG), chunk by chunk (PNG) or RIFF chunk by RIFF chunk (WebP) and only the metadata
ones are left out, so that the picture, its colour profile (ICC) and its size on disk stay what the seller
sent. The EXIF orientation decides which way up the picture is shown (and what the model sees, see
:func:`prodtype.ml.image.decode_image`): it is kept by writing a minimal EXIF block with only that tag.
Walking the structure costs well under a millisecond for a product photo (it reads headers, not pixels).
"""

from __future__ import annotations

import struct

_ORIENTATION_TAG = 0x0112
_EXIF_PREFIX = b"Exif\x00\x00"


def exif_orientation(tiff: bytes) -> int:
    """The orientation (1-8) in a TIFF-structured EXIF block (with or without the ``Exif`` prefix), or 1
    when it has none or cannot be read (a damaged block must not make a good picture unusable)."""
    if tiff.startswith(_EXIF_PREFIX):
        tiff = tiff[len(_EXIF_PREFIX) :]
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(min(count, 512)):
            tag, kind, _n = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * i)
            if tag == _ORIENTATION_TAG and kind == 3:
                (value,) = struct.unpack_from(order + "H", tiff, ifd + 2 + 12 * i + 8)
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error):
        return 1
    return 1


def minimal_exif(orientation: int) -> bytes:
    """A big-endian TIFF structure with one IFD holding only the orientation tag (no ``Exif`` prefix)."""
    entry = struct.pack(">HHIHH", _ORIENTATION_TAG, 3, 1, orientation, 0)
    return b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)


# -- JPEG -------------------------------------------------------------------------------------------------

_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and the restart markers carry no length


def _keep_jpeg_segment(marker: int, payload: bytes) -> bool:
    if marker == 0xFE:  # COM: free text
        return False
    if 0xE0 <= marker <= 0xEF:  # APPn: only what decoding needs
        if marker == 0xE0:
            return payload.startswith((b"JFIF\x00", b"JFXX\x00"))
        if marker == 0xE2:
            return payload.startswith(b"ICC_PROFILE\x00")
        if marker == 0xEE:
            return payload.startswith(b"Adobe")  # the colour transform of CMYK/YCCK pictures
        return False  # APP1 Exif/XMP, APP13 IPTC/Photoshop, APP2 MPF/FlashPix, maker notes...
    return True


def _jpeg_app1_exif(orientation: int) -> bytes:
    payload = _EXIF_PREFIX + minimal_exif(orientation)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def strip_jpeg(data: bytes) -> bytes:
    """``data`` without its metadata segments and without anything after the end-of-image marker (where
    cameras append further pictures with their own EXIF)."""
    parts: list[bytes] = [b"\xff\xd8"]
    pos, n = 2, len(data)
    orientation_written = False
    in_scan = False
    while pos < n:
        if in_scan:  # entropy-coded data: runs until a marker that is not stuffing or a restart
            ff = data.find(b"\xff", pos)
            while ff != -1 and ff + 1 < n and (data[ff + 1] == 0 or data[ff + 1] in _STANDALONE):
                ff = data.find(b"\xff", ff + 2)
            end = n if ff == -1 or ff + 1 >= n else ff
            parts.append(data[pos:end])
            pos, in_scan = end, False
            continue
        if data[pos] != 0xFF:  # not a marker where one must be: keep the rest as it is (Pillow judges)
            parts.append(data[pos:])
            break
        marker = data[pos + 1] if pos + 1 < n else _EOI
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            parts.append(b"\xff\xd9")
            break
        if marker in _STANDALONE:
            parts.append(data[pos : pos + 2])
            pos += 2
            continue
        if pos + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        payload = data[pos + 4 : min(end, n)]
        if marker == 0xE1 and payload.startswith(_EXIF_PREFIX) and not orientation_written:
            orientation = exif_orientation(payload)
            if orientation != 1:
                parts.append(_jpeg_app1_exif(orientation))
            orientation_written = True
        elif _keep_jpeg_segment(marker, payload):
            parts.append(data[pos : min(end, n)])
        pos = end
        in_scan = marker == _SOS
    return b"".join(parts)


# -- PNG --------------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"}


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib

    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def strip_png(data: bytes) -> bytes:
    """``data`` without its text, time and EXIF chunks (EXIF kept as the orientation only)."""
    parts: list[bytes] = [_PNG_SIGNATURE]
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 8 <= n:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if kind == b"eXIf":
            orientation = exif_orientation(data[pos + 8 : min(pos + 8 + length, n)])
            if orientation != 1:
                parts.append(_png_chunk(b"eXIf", minimal_exif(orientation)))
        elif kind not in _PNG_DROPPED:
            parts.append(data[pos : min(end, n)])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(parts)


# -- WebP -------------------------------------------------------------------------------------------------

_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) % 2 else b""
    return kind + struct.pack("<I", len(payload)) + payload + pad


def strip_webp(data: bytes) -> bytes:
    """``data`` without its EXIF (kept as the orientation only) and XMP chunks, flags updated."""
    if len(data) < 12:
        return data
    (riff_size,) = struct.unpack_from("<I", data, 4)
    n = min(len(data), 8 + riff_size)
    chunks: list[tuple[bytes, bytes]] = []
    pos = 12
    orientation = 1
    while pos + 8 <= n:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        payload = data[pos + 8 : min(pos + 8 + size, n)]
        if kind == b"EXIF":
            orientation = exif_orientation(payload)
        elif kind != b"XMP ":
            chunks.append((kind, payload))
        pos += 8 + size + (size % 2)
    out: list[bytes] = []
    for kind, payload in chunks:
        if kind == b"VP8X" and payload:
            flags = payload[0] & ~(_VP8X_EXIF | _VP8X_XMP)
            if orientation != 1:
                flags |= _VP8X_EXIF
            payload = bytes([flags]) + payload[1:]
        out.append(_riff_chunk(kind, payload))
    has_vp8x = any(kind == b"VP8X" for kind, _ in chunks)
    if orientation != 1 and has_vp8x:  # the EXIF chunk comes after the image data
        out.append(_riff_chunk(b"EXIF", minimal_exif(orientation)))
    body = b"WEBP" + b"".join(out)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def strip_metadata(data: bytes, content_type: str | None) -> bytes:
    """``data`` (a JPEG, PNG or WebP file, per its sniffed ``content_type``) without personal metadata;
    other types come back unchanged."""
    if content_type == "image/jpeg":
        return strip_jpeg(data)
    if content_type == "image/png":
        return strip_png(data)
    if content_type == "image/webp":
        return strip_webp(data)
    return data
