"""Bulk jobs: a file of products classified in the background, and its rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from prodtype.db.tables import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("bad", sa.Integer(), nullable=False),
        sa.Column("photos", sa.Integer(), nullable=False),
        sa.Column("has_zip", sa.Boolean(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_bulk_jobs_status")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_bulk_jobs_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_jobs")),
    )
    op.create_index(op.f("ix_bulk_jobs_created_by_id"), "bulk_jobs", ["created_by_id"])
    op.create_index(op.f("ix_bulk_jobs_status"), "bulk_jobs", ["status"])
    op.create_index(op.f("ix_bulk_jobs_created_at"), "bulk_jobs", ["created_at"])
    op.create_table(
        "bulk_job_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("row_index", sa.String(length=64), nullable=False),
        sa.Column("designation", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("photo", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=True),
        sa.Column("prdtypecode", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'done', 'bad')", name=op.f("ck_bulk_job_rows_state")),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["bulk_jobs.id"],
            name=op.f("fk_bulk_job_rows_job_id_bulk_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_job_rows")),
    )
    op.create_index("ix_bulk_job_rows_job_state_line", "bulk_job_rows", ["job_id", "state", "line"])


def downgrade() -> None:
    op.drop_index("ix_bulk_job_rows_job_state_line", table_name="bulk_job_rows")
    op.drop_table("bulk_job_rows")
    op.drop_index(op.f("ix_bulk_jobs_created_at"), table_name="bulk_jobs")
    op.drop_index(op.f("ix_bulk_jobs_status"), table_name="bulk_jobs")
    op.drop_index(op.f("ix_bulk_jobs_created_by_id"), table_name="bulk_jobs")
    op.drop_table("bulk_jobs")
