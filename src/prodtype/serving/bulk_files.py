"""Reading what a bulk job is given: a CSV in the challenge's X format and a zip of photos.

The whole file is refused (a :class:`ServiceError`, hence a 4xx) only when it cannot be read as a whole:
not UTF-8, no header or the wrong one, over the size or row limits; a zip that is not a zip, encrypted,
with more entries or more uncompressed bytes than allowed, an entry that expands suspiciously (a zip
bomb), a name that climbs out of its folder (``../``, absolute, drive letters), or an entry that is not a
JPEG or PNG photo. A row that is wrong on its own (missing fields, an empty title, ids that are not
integers, an index seen before) is a :class:`BadRow` with its line and the reason, and the others go on.

Nothing is ever extracted to disk: photos are read from the zip by name, each at most the single upload
limit (zipfile stops at an entry's declared size, and a CRC check catches a size that lies).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from typing import IO

from prodtype.config import Settings
from prodtype.serving.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError
from prodtype.serving.storage import sniff_image_type

HEADER = ("designation", "description", "productid", "imageid")
LAYOUT = "',designation,description,productid,imageid' (the challenge's X format)"
PHOTO_NAME = re.compile(r"image_(\d{1,19})_product_(\d{1,19})\.(?:jpe?g|png)", re.IGNORECASE)
PHOTO_TYPES = ("image/jpeg", "image/png")
MAX_INDEX_CHARS = 64
# Entries that archivers add beside the files (macOS resource forks, Windows thumbnails): skipped.
_ARCHIVER_NOISE = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$)")


@dataclass(frozen=True)
class CsvRow:
    line: int
    index: str
    designation: str
    description: str
    productid: int
    imageid: int


@dataclass(frozen=True)
class BadRow:
    line: int
    index: str
    reason: str


@dataclass(frozen=True)
class ParsedCsv:
    rows: list[CsvRow]
    bad: list[BadRow]

    @property
    def total(self) -> int:
        return len(self.rows) + len(self.bad)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"the CSV is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} cannot be decoded; "
            "save the file as UTF-8 (the challenge's files are)"
        ) from None


def _integer(value: str) -> int | None:
    value = value.strip()
    if value.endswith(".0"):  # written by spreadsheets and pandas
        value = value[:-2]
    if 0 < len(value) <= 19 and value.isascii() and value.isdigit():
        return int(value)
    return None


def parse_csv(data: bytes, settings: Settings) -> ParsedCsv:
    """The products of a CSV in the challenge's X format, and the rows that cannot be products."""
    if len(data) > settings.bulk_job_max_csv_bytes:
        raise PayloadTooLargeError(
            f"the CSV is over {settings.bulk_job_max_csv_bytes} bytes; split it into smaller files"
        )
    if not data.strip():
        raise InvalidInputError(f"the CSV is empty; expected the header {LAYOUT} and one product per line")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise InvalidInputError(
            f"the CSV holds a NUL byte on line {line}: it looks like a binary file (or UTF-16); "
            "send a UTF-8 CSV file"
        )
    # strict: a quote left open is an error on its line, not the rest of the file read as one field
    reader = csv.reader(io.StringIO(_text(data), newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise InvalidInputError(f"the CSV's header cannot be read ({exc}); expected {LAYOUT}") from None
    if tuple(header[1:]) != HEADER:
        raise InvalidInputError(f"the CSV's header is {','.join(header)[:200]!r}; expected {LAYOUT}")
    rows: list[CsvRow] = []
    bad: list[BadRow] = []
    seen: set[str] = set()
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidInputError(f"the CSV cannot be read from line {line} on: {exc}") from None
        start, line = line, reader.line_num + 1
        if not fields or not "".join(fields).strip():
            continue  # blank lines, as at the end of many files
        if len(rows) + len(bad) >= settings.bulk_job_max_rows:
            raise PayloadTooLargeError(
                f"the CSV holds more than {settings.bulk_job_max_rows} products; at most "
                f"{settings.bulk_job_max_rows} are accepted per job: split the file"
            )
        index = fields[0].strip()[:MAX_INDEX_CHARS]
        problem = _row_problem(fields, index, seen)
        if problem:
            bad.append(BadRow(start, index, problem))
            continue
        seen.add(index)
        productid, imageid = _integer(fields[3]), _integer(fields[4])
        assert productid is not None and imageid is not None  # checked by _row_problem
        rows.append(CsvRow(start, index, fields[1], fields[2], productid, imageid))
    if not rows and not bad:
        raise InvalidInputError(f"the CSV holds no products, only its header; expected {LAYOUT}")
    return ParsedCsv(rows, bad)


def _row_problem(fields: list[str], index: str, seen: set[str]) -> str | None:
    if len(fields) != len(HEADER) + 1:
        return f"{len(fields)} fields where the header has {len(HEADER) + 1} (index and {', '.join(HEADER)})"
    if not index:
        return "the first column (the row's index) is empty"
    if index in seen:
        return f"the index {index!r} appears on an earlier line"
    if not fields[1].strip():
        return "designation is empty: every product needs a title"
    for name, value in (("productid", fields[3]), ("imageid", fields[4])):
        if _integer(value) is None:
            return f"{name} {value[:30]!r} is not a whole number"
    return None


@dataclass(frozen=True)
class PhotoArchive:
    """The photos of a checked zip, by (imageid, productid): the entry's name in the zip."""

    names: dict[tuple[int, int], str]


def _unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (
        name.startswith(("/", "\\"))
        or "\\" in name
        or ".." in parts
        or bool(re.match(r"^[A-Za-z]:", name))
        or "\x00" in name
    )


def check_zip(file: IO[bytes], size: int, settings: Settings) -> PhotoArchive:
    """Check a zip of photos from its central directory and the first bytes of every entry; refuse it
    whole, saying which entry and why, when it is not a safe zip of JPEG/PNG photos named as the
    challenge names them."""
    if size > settings.bulk_job_max_zip_bytes:
        raise PayloadTooLargeError(
            f"the zip is {size} bytes; at most {settings.bulk_job_max_zip_bytes} are accepted"
        )
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise UnsupportedMediaTypeError(f"the photos file is not a zip archive ({exc})") from None
    with archive:
        entries = [i for i in archive.infolist() if not i.is_dir()]
        if len(entries) > settings.bulk_job_max_zip_entries:
            raise InvalidInputError(
                f"the zip holds {len(entries)} files; at most {settings.bulk_job_max_zip_entries} are "
                "accepted"
            )
        unpacked = sum(i.file_size for i in entries)
        if unpacked > settings.bulk_job_max_unzipped_bytes:
            raise PayloadTooLargeError(
                f"the zip's files add up to {unpacked} bytes once uncompressed; at most "
                f"{settings.bulk_job_max_unzipped_bytes} are accepted"
            )
        names: dict[tuple[int, int], str] = {}
        for info in entries:
            names.update(_check_entry(archive, info, settings))
    return PhotoArchive(names)


def _check_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, settings: Settings
) -> dict[tuple[int, int], str]:
    name = info.filename
    shown = repr(name[:120])
    if _unsafe(name):
        raise InvalidInputError(
            f"the zip entry {shown} points outside the archive's folder (an absolute path or '..'); "
            "zip the photos themselves"
        )
    if _ARCHIVER_NOISE.search(name):
        return {}
    if info.flag_bits & 0x1:
        raise InvalidInputError(f"the zip entry {shown} is encrypted; send an archive without a password")
    match = PHOTO_NAME.fullmatch(name.rsplit("/", 1)[-1])
    if match is None:
        raise InvalidInputError(
            f"the zip holds {shown}, which is not a photo named as the challenge names them: expected "
            "image_<imageid>_product_<productid>.jpg (JPEG or PNG)"
        )
    if info.file_size > settings.upload_limit_bytes:
        raise PayloadTooLargeError(
            f"the photo {shown} is {info.file_size} bytes; at most {settings.upload_limit_bytes} are accepted"
        )
    if info.file_size > 1024 * 1024 and info.file_size > settings.bulk_job_max_zip_ratio * max(
        info.compress_size, 1
    ):
        raise InvalidInputError(
            f"the zip entry {shown} expands {info.file_size // max(info.compress_size, 1)} times "
            f"(at most {settings.bulk_job_max_zip_ratio:g} is accepted): it looks like a zip bomb"
        )
    try:
        with archive.open(info) as member:
            head = member.read(16)
    except (zipfile.BadZipFile, NotImplementedError, OSError, RuntimeError, EOFError) as exc:
        raise InvalidInputError(f"the zip entry {shown} cannot be read ({exc})") from None
    kind = sniff_image_type(head)
    if kind not in PHOTO_TYPES:
        found = kind.removeprefix("image/").upper() if kind else f"not an image (starts {head[:8]!r})"
        raise UnsupportedMediaTypeError(f"the zip entry {shown} is {found}; the photos must be JPEG or PNG")
    return {(int(match.group(1)), int(match.group(2))): name}


def read_photo(archive: zipfile.ZipFile, name: str, limit_bytes: int) -> bytes:
    """A photo's bytes (at most ``limit_bytes + 1``: the prediction's checks then say it is too big)."""
    with archive.open(name) as member:
        return member.read(limit_bytes + 1)
