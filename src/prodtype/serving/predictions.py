"""Predicting a product's type and keeping the record: create, read, list, delete."""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from prodtype.catalog import Catalog
from prodtype.data.text import clean_text
from prodtype.db.tables import Prediction, Role, Status, User
from prodtype.ml.image import ImageError
from prodtype.ml.predictor import Prediction as ModelOutput
from prodtype.ml.predictor import Predictor
from prodtype.serving import audit
from prodtype.serving.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from prodtype.serving.image_metadata import strip_metadata
from prodtype.serving.shadow import ShadowScorer
from prodtype.serving.storage import ImageStore, reference_lock, sniff_image_type

log = logging.getLogger(__name__)

MAX_DESIGNATION_CHARS = 1_000
MAX_DESCRIPTION_CHARS = 50_000
# Declared types that may carry an image: browsers and curl send octet-stream for unknown extensions.
_GENERIC_TYPES = {"application/octet-stream", "binary/octet-stream"}
# What the service accepts and promises (README): the model could read more, but each format is parser
# surface on untrusted bytes, and the photos are shown to reviewers' browsers.
UPLOAD_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
UPLOAD_FORMATS = tuple(UPLOAD_TYPES.values())

SortKey = Literal["confidence", "-confidence", "created_at", "-created_at", "id", "-id"]


@dataclass(frozen=True)
class Submission:
    designation: str
    description: str = ""
    image: bytes | None = None
    image_content_type: str | None = None  # as declared by the client


@dataclass(frozen=True)
class CheckedSubmission:
    designation: str
    description: str
    image: bytes | None
    image_type: str | None  # sniffed from the bytes


@dataclass(frozen=True)
class PredictionFilter:
    status: Status | None = None
    predicted_code: int | None = None
    confidence_below: float | None = None
    created_by: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class CandidateView:
    prdtypecode: int
    category: str
    probability: float


@dataclass(frozen=True)
class PredictionView:
    """A stored prediction as the API and the pages show it: codes with their names, usernames, no ORM."""

    id: int
    designation: str
    description: str
    has_image: bool
    prdtypecode: int
    category: str
    confidence: float
    top_k: list[CandidateView]
    model_version: str
    status: Status
    final_code: int | None
    final_category: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    created_by: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Prediction, catalog: Catalog) -> PredictionView:
        return cls(
            id=row.id,
            designation=row.designation,
            description=row.description,
            has_image=row.image_sha256 is not None,
            prdtypecode=row.predicted_code,
            category=catalog.name(row.predicted_code),
            confidence=row.confidence,
            top_k=[
                CandidateView(int(c["prdtypecode"]), str(c["category"]), float(c["probability"]))
                for c in row.top_k
            ],
            model_version=row.model_version,
            status=Status(row.status),
            final_code=row.final_code,
            final_category=catalog.name(row.final_code) if row.final_code is not None else None,
            reviewed_by=row.reviewed_by.username if row.reviewed_by is not None else None,
            reviewed_at=row.reviewed_at,
            created_by=row.created_by.username,
            created_at=row.created_at,
        )


def check_image_header(data: bytes, max_pixels: int) -> None:
    """Refuse absurd dimensions from the header alone, before anything is decoded (decompression bombs).
    Corrupt or truncated pixel data is found when the model decodes the image (ImageError)."""
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        raise InvalidInputError(
            f"the image's dimensions are absurdly large; at most {max_pixels:,} pixels are accepted"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"the image is corrupt or not in a supported format: its header cannot be read "
            f"({len(data):,} bytes starting {data[:8]!r}); expected a JPEG, PNG or WebP file"
        ) from None
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise InvalidInputError(f"the image is corrupt: its header cannot be read ({exc})") from None
    if width * height > max_pixels:
        raise InvalidInputError(
            f"the image declares {width}x{height} = {width * height:,} pixels; at most {max_pixels:,} are "
            "accepted"
        )


def _check_text(field: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidInputError(f"{field} is {len(value)} characters long; at most {limit} are accepted")
    if "\x00" in value:  # PostgreSQL cannot store it; refused alike on every database
        raise InvalidInputError(f"{field} contains a NUL character (\\x00); send plain text")
    return value


def check_submission(
    submission: Submission, upload_limit_bytes: int, max_image_pixels: int = 40_000_000
) -> CheckedSubmission:
    """Refuse what cannot be predicted, each with a message that names the field and the limit.

    The image that comes back has its personal metadata removed (EXIF, XMP, IPTC, comments; see
    :mod:`prodtype.serving.image_metadata`): the model reads it and the store keeps it that way."""
    designation = (submission.designation or "").strip()
    if not designation:
        raise InvalidInputError("designation is required: the product title must not be empty")
    designation = _check_text("designation", designation, MAX_DESIGNATION_CHARS)
    if not clean_text(designation):
        raise InvalidInputError(
            f"designation has no text once HTML tags and entities are removed ({designation[:40]!r}); "
            "send the product title as text"
        )
    description = _check_text("description", (submission.description or "").strip(), MAX_DESCRIPTION_CHARS)
    image, image_type = submission.image, None
    if image is not None:
        declared = (submission.image_content_type or "").split(";")[0].strip().lower()
        if declared and not declared.startswith("image/") and declared not in _GENERIC_TYPES:
            raise UnsupportedMediaTypeError(
                f"the image part has content type {declared!r}; send a JPEG, PNG or WebP "
                "file (image/jpeg, image/png, image/webp)"
            )
        if len(image) == 0:
            raise InvalidInputError("the image file is empty (0 bytes); leave the image out or send a photo")
        if len(image) > upload_limit_bytes:
            raise PayloadTooLargeError(
                f"the image is {len(image)} bytes; the limit is {upload_limit_bytes} bytes"
            )
        image_type = sniff_image_type(image)
        if image_type is None:
            raise InvalidInputError(
                "the uploaded file is not an image: expected a JPEG, PNG or WebP file "
                f"(its first bytes are {image[:8]!r})"
            )
        if image_type not in UPLOAD_TYPES:
            raise UnsupportedMediaTypeError(
                f"the image is a {image_type.removeprefix('image/').upper()} file; send a JPEG, PNG or WebP "
                "file (image/jpeg, image/png, image/webp)"
            )
        check_image_header(image, max_image_pixels)
        image = strip_metadata(image, image_type)
    return CheckedSubmission(designation, description, image, image_type)


# Writes photos (with their fsync) while the model runs: a few milliseconds off every prediction's answer.
_PHOTO_WRITES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="photo-write")


def create_prediction(
    session: Session,
    store: ImageStore,
    model: Predictor,
    submission: CheckedSubmission,
    user: User,
    k: int = 5,
    shadow: ShadowScorer | None = None,
) -> Prediction:
    """Predict with ``model`` and record its answer (and the image, written while the model runs); with
    ``shadow``, the recorded product is also queued for the model in shadow (never waited for)."""
    written = _PHOTO_WRITES.submit(store.add, submission.image) if submission.image is not None else None
    try:
        result = model.predict(submission.designation, submission.description, submission.image, k=k)
    except BaseException as exc:
        if written is not None and written.exception() is None:
            _forget_unreferenced(session, store, written.result()[0])
        if isinstance(exc, ImageError):  # corrupt or truncated pixel data, found while decoding
            raise InvalidInputError(f"the image cannot be used: {exc}") from exc
        raise
    row = record_prediction(session, store, submission, result, model.version, user, written=written)
    queue_for_shadow(shadow, row.id, submission)
    return row


def queue_for_shadow(shadow: ShadowScorer | None, prediction_id: int, submission: CheckedSubmission) -> None:
    if shadow is not None:
        shadow.submit(prediction_id, submission.designation, submission.description, submission.image)


def record_prediction(
    session: Session,
    store: ImageStore,
    submission: CheckedSubmission,
    result: ModelOutput,
    model_version: str,
    user: User,
    *,
    written: Future[tuple[str, bool]] | None = None,
) -> Prediction:
    """Record what a model answered for a submission: a pending prediction, its image, an audit event.

    ``written`` is the image's write, already started (:func:`create_prediction`); otherwise it is written
    here. The write needs no lock (the photo is named by its content and appears whole); the insert and its
    commit happen under the digest's shared :func:`~prodtype.serving.storage.reference_lock`, after checking
    that the photo is still there (a deletion of another record with the same photo may have removed it:
    it is written again), so that no deletion can remove it between the check and the commit; when the
    insert fails the photo goes again if nothing references it (no orphan)."""
    row = Prediction(
        designation=submission.designation,
        description=submission.description,
        predicted_code=int(result.prdtypecode),
        confidence=float(min(max(result.confidence, 0.0), 1.0)),
        top_k=[
            {"prdtypecode": int(c.prdtypecode), "category": c.category, "probability": float(c.probability)}
            for c in result.top_k
        ],
        model_version=model_version,
        status=Status.PENDING.value,
        created_by_id=user.id,
    )
    if submission.image is None:
        return _insert(session, row, user)
    digest = written.result()[0] if written is not None else store.add(submission.image)[0]
    try:
        with reference_lock(session, digest, exclusive=False):
            if not store.exists(digest):  # removed by a deletion since it was written: write it again
                store.add(submission.image)
            row.image_sha256, row.image_content_type = digest, submission.image_type
            return _insert(session, row, user)
    except BaseException:
        _forget_unreferenced(session, store, digest)
        raise


def _forget_unreferenced(session: Session, store: ImageStore, digest: str) -> None:
    """Remove a photo written for a prediction that was not made, unless a record uses it; a failure here
    is logged, never raised over the error that got us here."""
    try:
        store.remove_if_unreferenced(session, digest, lambda d: image_references(session, d))
    except Exception as exc:
        log.warning("could not remove the unreferenced image %s: %s", digest, exc)


def _insert(session: Session, row: Prediction, user: User) -> Prediction:
    session.add(row)
    session.flush()
    audit.record(
        session,
        "prediction.created",
        "prediction",
        row.id,
        user,
        {
            "predicted_code": row.predicted_code,
            "confidence": row.confidence,
            "model_version": row.model_version,
            "image_sha256": row.image_sha256,
        },
    )
    session.commit()
    return row


def _visible_to(query: Select[Prediction], viewer: User) -> Select[Prediction]:
    # Customers see only what they submitted; reviewers and admins see everything.
    if viewer.role == Role.CUSTOMER.value:
        return query.where(Prediction.created_by_id == viewer.id)
    return query


def get_prediction(session: Session, prediction_id: int, viewer: User) -> Prediction:
    row = session.scalar(_visible_to(select(Prediction).where(Prediction.id == prediction_id), viewer))
    if row is None:
        # The same answer whether it does not exist or belongs to someone else: ids do not leak.
        raise NotFoundError(f"no prediction with id {prediction_id}")
    return row


def get_image(session: Session, store: ImageStore, prediction_id: int, viewer: User) -> tuple[bytes, str]:
    row = get_prediction(session, prediction_id, viewer)
    if row.image_sha256 is None:
        raise NotFoundError(f"prediction {prediction_id} was submitted without an image")
    data = store.get(row.image_sha256)
    if data is None:
        raise NotFoundError(f"the image of prediction {prediction_id} is missing from the image store")
    # Stripped on the way out too: photos stored before metadata was removed on upload leak nothing.
    content_type = row.image_content_type or "application/octet-stream"
    return strip_metadata(data, content_type), content_type


_SORTS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "confidence": (Prediction.confidence.asc(), Prediction.id.asc()),
    "-confidence": (Prediction.confidence.desc(), Prediction.id.desc()),
    "created_at": (Prediction.created_at.asc(), Prediction.id.asc()),
    "-created_at": (Prediction.created_at.desc(), Prediction.id.desc()),
    "id": (Prediction.id.asc(),),
    "-id": (Prediction.id.desc(),),
}


def _in_utc(name: str, value: datetime | None) -> datetime | None:
    """``value`` in UTC (naive means UTC); a time whose UTC equivalent is outside years 1-9999 is refused."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError(
            f"{name}: {value.isoformat()} is outside the dates that can be compared "
            "(0001-01-01 to 9999-12-31 in UTC)"
        ) from None


def list_predictions(
    session: Session,
    viewer: User,
    filters: PredictionFilter | None = None,
    sort: SortKey = "confidence",
    offset: int = 0,
    limit: int = 20,
) -> tuple[Sequence[Prediction], int]:
    """A page of predictions and the number matching in all; lowest confidence first by default."""
    f = filters or PredictionFilter()
    after, before = _in_utc("created_after", f.created_after), _in_utc("created_before", f.created_before)
    query = _visible_to(select(Prediction), viewer)
    if f.status is not None:
        query = query.where(Prediction.status == Status(f.status).value)
    if f.predicted_code is not None:
        query = query.where(Prediction.predicted_code == f.predicted_code)
    if f.confidence_below is not None:
        query = query.where(Prediction.confidence < f.confidence_below)
    if f.created_by is not None:
        creator = select(User.id).where(User.username == f.created_by).scalar_subquery()
        query = query.where(Prediction.created_by_id == creator)
    if after is not None:
        query = query.where(Prediction.created_at >= after)
    if before is not None:
        query = query.where(Prediction.created_at < before)
    if after and before and after >= before:
        raise InvalidInputError(
            f"created_after ({after.isoformat()}) must be earlier than created_before ({before.isoformat()})"
        )
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*_SORTS[sort]).offset(offset).limit(limit)).all()
    return rows, count


def image_references(session: Session, digest: str) -> int:
    return session.scalar(select(func.count()).where(Prediction.image_sha256 == digest)) or 0


def delete_prediction(session: Session, store: ImageStore, prediction_id: int, actor: User) -> None:
    """Delete the record; its image goes too, unless another record uses the same file."""
    row = session.get(Prediction, prediction_id)
    if row is None:
        raise NotFoundError(f"no prediction with id {prediction_id}")
    digest = row.image_sha256
    audit.record(
        session,
        "prediction.deleted",
        "prediction",
        prediction_id,
        actor,
        {
            "designation": row.designation,
            "predicted_code": row.predicted_code,
            "status": row.status,
            "final_code": row.final_code,
            "image_sha256": digest,
        },
    )
    session.delete(row)
    session.commit()
    if digest is not None:
        store.remove_if_unreferenced(session, digest, lambda d: image_references(session, d))
