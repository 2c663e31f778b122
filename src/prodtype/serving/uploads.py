"""What the API routes and the pages both do with HTTP uploads and replies: read an uploaded file up to a
limit, answer a stored photo with the headers that keep a browser from running it, and count pages."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Response
from starlette.datastructures import UploadFile

# A photo is served as what it is and nothing else: never sniffed as HTML, never allowed to run anything.
IMAGE_HEADERS = {
    "Cache-Control": "private, max-age=86400",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


def read_upload(upload: UploadFile | None, limit_bytes: int) -> tuple[bytes | None, str | None]:
    """The uploaded file's bytes (at most ``limit_bytes + 1``, so that the checks can say it is too large
    without reading a huge file) and its declared type; (None, None) when no file was chosen (a browser
    sends an empty part without a name then)."""
    if upload is None or not (upload.filename or upload.size):
        return None, None
    return upload.file.read(limit_bytes + 1), upload.content_type


def image_response(data: bytes, content_type: str) -> Response:
    return Response(content=data, media_type=content_type, headers=IMAGE_HEADERS)


@dataclass(frozen=True)
class Paging:
    """Page ``number`` (1-based) of ``size`` items."""

    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def count(self, total: int) -> int:
        """How many pages ``total`` items fill (at least one, empty)."""
        return max(1, -(-total // self.size))


def ascii_number(value: str, max_digits: int) -> int | None:
    """A decimal number written with ASCII digits only (``str.isdigit`` also accepts '²' and '①', which
    ``int`` then refuses), or None."""
    value = value.strip()
    if 0 < len(value) <= max_digits and value.isascii() and value.isdigit():
        return int(value)
    return None


def page_number(value: str) -> int:
    """A 1-based page number from a query string; anything else is the first page."""
    number = ascii_number(value, 6)
    return number if number else 1
