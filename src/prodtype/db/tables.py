"""The tables: users, predictions (one per submitted product) and the append-only audit log.

Every timestamp is stored in UTC; :class:`UTCDateTime` gives back aware datetimes on every backend
(SQLite keeps no time zone).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so that Alembic migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Status(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.CUSTOMER.value)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Every access token carries the version current when it was issued; bumping it (password change,
    # disable, log out everywhere) revokes all of them at once. Read with the user row on every request.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def role_enum(self) -> Role:
        return Role(self.role)


class Prediction(Base):
    """A submitted product, what the model said about it, and what a reviewer decided."""

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint(_in("status", Status), name="status"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        Index("ix_predictions_status_confidence", "status", "confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    designation: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    # sha256 of the image bytes: the file's name in the content-addressed store.
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    image_content_type: Mapped[str | None] = mapped_column(String(64), default=None)
    predicted_code: Mapped[int] = mapped_column(Integer, index=True)
    confidence: Mapped[float] = mapped_column(Float)
    top_k: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING.value)
    final_code: Mapped[int | None] = mapped_column(Integer, default=None)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id], lazy="joined")
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id], lazy="joined")


class AuditEvent(Base):
    """One change, never updated nor deleted (database triggers refuse both)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The actor's name is copied so that the log reads on its own; None for system actions (CLI, start-up).
    actor: Mapped[str | None] = mapped_column(String(64), default=None)
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)


class RateLimitCounter(Base):
    """A fixed-window counter of the login throttle (``limits``' storage interface, see
    :mod:`prodtype.serving.throttle`), shared by every worker process that uses this database."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # seconds since the epoch


class ModelPromotion(Base):
    """A champion chosen through prodtype (promote, rollback, the retrain job): the only versions a
    running service will switch to. Whoever can write to the MLflow registry cannot write here."""

    __tablename__ = "model_promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    model_name: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))  # promote or rollback
    version: Mapped[int] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer, default=None)
    # sha256 of the bundle's manifest.json (which holds the sha256 of every other file) when promoted:
    # a bundle replaced in the registry's artifact store afterwards is refused.
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    actor: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_model_promotions_model_name", "model_name", "id"),)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RowState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    BAD = "bad"


class BulkJob(Base):
    """A file of products classified in the background (:mod:`prodtype.serving.bulk_jobs`). Its rows are
    the queue: a worker that stops (a restart) leaves the rows it had not done pending, and the next one
    goes on from there."""

    __tablename__ = "bulk_jobs"
    __table_args__ = (CheckConstraint(_in("status", JobStatus), name="status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random: ids do not leak a count
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value, index=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    total: Mapped[int] = mapped_column(Integer, default=0)  # rows of the CSV
    done: Mapped[int] = mapped_column(Integer, default=0)  # rows classified or found bad
    bad: Mapped[int] = mapped_column(Integer, default=0)
    photos: Mapped[int] = mapped_column(Integer, default=0)  # rows with a photo in the zip
    has_zip: Mapped[bool] = mapped_column(Boolean, default=False)
    model_version: Mapped[str | None] = mapped_column(String(128), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Written by the worker after every chunk: a running job whose heartbeat is old lost its worker.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id], lazy="joined")


class BulkJobRow(Base):
    """One product of a bulk job: what the CSV said, and what became of it (a prediction, or a reason)."""

    __tablename__ = "bulk_job_rows"
    __table_args__ = (
        CheckConstraint(_in("state", RowState), name="state"),
        Index("ix_bulk_job_rows_job_state_line", "job_id", "state", "line"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("bulk_jobs.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)  # where the row starts in the CSV (the header is line 1)
    row_index: Mapped[str] = mapped_column(String(64), default="")  # the CSV's first column
    designation: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    photo: Mapped[str | None] = mapped_column(String(255), default=None)  # its name in the zip
    state: Mapped[str] = mapped_column(String(8), default=RowState.PENDING.value)
    # Copied from the prediction: the result file says what the model answered even if the record goes.
    prediction_id: Mapped[int | None] = mapped_column(Integer, default=None)
    prdtypecode: Mapped[int | None] = mapped_column(Integer, default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)


class RetrainJob(Base):
    """A retrain started through the API or the retrain page, when the database is PostgreSQL
    (:mod:`prodtype.loop.retrain_jobs`; with SQLite the records are JSON files on the one machine). Any
    replica reads it: the log file stays on the machine that ran the job, its tail is copied here."""

    __tablename__ = "retrain_jobs"
    __table_args__ = (CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # UTC start time + random: sorts by age
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    step: Mapped[str | None] = mapped_column(String(32), default=None)
    requested_by: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    host: Mapped[str | None] = mapped_column(String(255), default=None)  # the machine that runs it
    pid: Mapped[int | None] = mapped_column(Integer, default=None)  # its process there
    # The PostgreSQL backend pid of the connection holding the retrain's advisory lock: while it holds
    # the lock the job is alive; a running job whose lock is gone died without writing its end.
    lock_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    log: Mapped[str | None] = mapped_column(Text, default=None)  # the log file's path on ``host``
    log_tail: Mapped[str | None] = mapped_column(Text, default=None)
    run_dir: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class ModelShadow(Base):
    """Which registered version runs in shadow beside the champion, chosen through prodtype (an admin, or the
    retrain job): the last row of a model says it (``start`` a version, or ``stop``). Kept here rather than
    as an MLflow alias for the same reason as :class:`ModelPromotion`: MLflow users cannot write here."""

    __tablename__ = "model_shadows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    model_name: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))  # start or stop
    version: Mapped[int | None] = mapped_column(Integer, default=None)  # None for stop
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    actor: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_model_shadows_model_name", "model_name", "id"),)


class ShadowPrediction(Base):
    """What the model in shadow answered for a prediction, recorded beside the served model's answer
    (scored off the request path, :mod:`prodtype.serving.shadow`). Goes with its prediction."""

    __tablename__ = "shadow_predictions"
    __table_args__ = (
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        Index("ix_shadow_predictions_version_prediction", "version", "prediction_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # the registry version that answered
    code: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
