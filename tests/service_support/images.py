"""Image payloads for tests: real product photos and the broken files the API must refuse."""

from __future__ import annotations

import io
import os
import struct
import zlib
from functools import cache
from pathlib import Path

from PIL import Image

DATA_DIR = Path(
    os.environ.get("PRODTYPE_DATA_DIR", Path(__file__).parents[3] / "shared" / "data" / "rakuten")
)


@cache
def sample_photos(count: int = 8) -> tuple[bytes, ...]:
    """Real product photos from the sample's image_train folder (sorted by name, so the same every run)."""
    folder = DATA_DIR / "image_train"
    names = sorted(p.name for p in folder.glob("*.jpg"))[:count]
    if not names:
        raise FileNotFoundError(f"no JPEG in {folder}: set PRODTYPE_DATA_DIR to the sample data folder")
    return tuple((folder / n).read_bytes() for n in names)


def photo(i: int = 0) -> bytes:
    return sample_photos()[i]


def png_of(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """A real photo cut in the middle of its compressed data."""
    data = photo()
    return data[: len(data) // 3]


def corrupt_jpeg() -> bytes:
    """A JPEG header followed by noise."""
    data = photo()
    head = data[:200]
    return head + bytes((i * 37 + 11) % 256 for i in range(len(data) - 200))


def not_an_image() -> bytes:
    return b"name,price\nmug,12.50\n" * 50


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny, well-formed PNG header announcing absurd dimensions (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def bomb_jpeg(side: int = 65_000) -> bytes:
    """A real photo whose frame header (SOF) is rewritten to announce side × side pixels."""
    data = bytearray(photo())
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            raise ValueError("unexpected JPEG layout")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", side, side)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker found")


def oversized_jpeg(size: int) -> bytes:
    """A valid photo padded after its end marker to ``size`` bytes."""
    data = photo()
    return data + b"\x00" * max(0, size - len(data))
