"""Shadow evaluation: which version runs in shadow, and what it answered beside the served model.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from prodtype.db.tables import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_shadows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_shadows")),
    )
    op.create_index("ix_model_shadows_model_name", "model_shadows", ["model_name", "id"])
    op.create_table(
        "shadow_predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_shadow_predictions_confidence_range")
        ),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_shadow_predictions_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_predictions")),
    )
    op.create_index(op.f("ix_shadow_predictions_prediction_id"), "shadow_predictions", ["prediction_id"])
    op.create_index(
        "ix_shadow_predictions_version_prediction",
        "shadow_predictions",
        ["version", "prediction_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_shadow_predictions_version_prediction", table_name="shadow_predictions")
    op.drop_index(op.f("ix_shadow_predictions_prediction_id"), table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
    op.drop_index("ix_model_shadows_model_name", table_name="model_shadows")
    op.drop_table("model_shadows")
