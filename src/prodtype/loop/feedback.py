"""Reviewed predictions become training data, written in the challenge format.

Accepted predictions (unchanged or with a corrected type) are labelled products: their final code, their
text and their image. Rejected ones stay in the database for the audit trail and are never exported.
A product submitted more than once (same image bytes and same cleaned text) is exported once, with the type
of its most recent review.

The export is a folder any reader of the official data reads::

    X_feedback.csv   ,designation,description,productid,imageid
    Y_feedback.csv   ,prdtypecode
    image_train/image_<imageid>_product_<productid>.jpg
    feedback.json    counts, the prediction ids behind each row, the newest review time

Ids are synthesised from the prediction id (stable across exports) and offset far above the official ranges,
so that feedback rows never collide with the base data's index, product ids or image ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from prodtype.data.challenge import Dataset, image_filename, load_dataset
from prodtype.data.text import join_text
from prodtype.db.tables import Prediction, Status
from prodtype.serving.storage import ImageStore, sniff_image_type

log = logging.getLogger(__name__)

FEEDBACK_INDEX_OFFSET = 100_000_000  # official index: 0..~100k (train + test)
FEEDBACK_ID_OFFSET = 90_000_000_000  # official product/image ids stay below ~5e9
X_NAME = "X_feedback.csv"
Y_NAME = "Y_feedback.csv"
IMAGES_NAME = "image_train"
SUMMARY_NAME = "feedback.json"


@dataclass
class FeedbackExport:
    out_dir: Path
    rows: int = 0
    with_image: int = 0
    duplicates: int = 0
    rejected_excluded: int = 0
    missing_images: int = 0
    corrected: int = 0
    reviewed_until: str | None = None
    prediction_ids: dict[int, list[int]] = field(default_factory=dict)  # index -> prediction ids

    @property
    def x_path(self) -> Path:
        return self.out_dir / X_NAME

    @property
    def y_path(self) -> Path:
        return self.out_dir / Y_NAME

    @property
    def images_dir(self) -> Path:
        return self.out_dir / IMAGES_NAME

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        out["prediction_ids"] = {str(k): v for k, v in self.prediction_ids.items()}
        return out


def dedup_key(designation: str, description: str, image_sha256: str | None) -> str:
    text = join_text(designation, description)
    return hashlib.sha256(f"{image_sha256 or '-'}\n{text}".encode()).hexdigest()


def reviewed_predictions(session: Session, until: datetime | None = None) -> list[Prediction]:
    """Accepted predictions with a final type, oldest review first (the newest review of a product wins)."""
    stmt = select(Prediction).where(
        Prediction.status == Status.ACCEPTED.value, Prediction.final_code.is_not(None)
    )
    if until is not None:
        stmt = stmt.where(Prediction.reviewed_at <= until)
    return list(session.scalars(stmt.order_by(Prediction.reviewed_at, Prediction.id)))


def count_rejected(session: Session) -> int:
    from sqlalchemy import func

    return int(
        session.scalar(
            select(func.count()).select_from(Prediction).where(Prediction.status == Status.REJECTED.value)
        )
        or 0
    )


def _as_jpeg(data: bytes) -> bytes:
    if sniff_image_type(data) == "image/jpeg":
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def export_feedback(
    session: Session, store: ImageStore, out_dir: Path, until: datetime | None = None
) -> FeedbackExport:
    """Write the reviewed products in the challenge format under ``out_dir`` (replacing an older export)."""
    out_dir = Path(out_dir)
    rows = reviewed_predictions(session, until)
    groups: dict[str, list[Prediction]] = {}
    for row in rows:
        groups.setdefault(dedup_key(row.designation, row.description, row.image_sha256), []).append(row)

    if out_dir.exists():
        for name in (X_NAME, Y_NAME, SUMMARY_NAME):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / IMAGES_NAME, ignore_errors=True)
    images_dir = out_dir / IMAGES_NAME
    images_dir.mkdir(parents=True, exist_ok=True)

    result = FeedbackExport(out_dir=out_dir, rejected_excluded=count_rejected(session))
    x_rows: list[dict[str, Any]] = []
    y_rows: list[dict[str, Any]] = []
    index: list[int] = []
    for members in groups.values():
        first = min(members, key=lambda p: p.id)
        latest = members[-1]  # ordered by review time
        idx = FEEDBACK_INDEX_OFFSET + first.id
        product_id = image_id = FEEDBACK_ID_OFFSET + first.id
        x_rows.append(
            {
                "designation": first.designation,
                "description": first.description or "",
                "productid": product_id,
                "imageid": image_id,
            }
        )
        y_rows.append({"prdtypecode": int(latest.final_code or 0)})
        index.append(idx)
        result.prediction_ids[idx] = [p.id for p in members]
        result.duplicates += len(members) - 1
        result.corrected += int(latest.final_code != latest.predicted_code)
        if first.image_sha256:
            try:
                data = store.read(first.image_sha256)
            except (OSError, ValueError):
                result.missing_images += 1
                log.warning("prediction %s: image %s missing from the store", first.id, first.image_sha256)
            else:
                (images_dir / image_filename(image_id, product_id)).write_bytes(_as_jpeg(data))
                result.with_image += 1
    result.rows = len(index)
    if rows:
        newest = max(r.reviewed_at for r in rows if r.reviewed_at is not None)
        result.reviewed_until = newest.isoformat()
    cols = ["designation", "description", "productid", "imageid"]
    pd.DataFrame(x_rows, index=pd.Index(index), columns=cols).to_csv(out_dir / X_NAME)
    pd.DataFrame(y_rows, index=pd.Index(index), columns=["prdtypecode"]).to_csv(out_dir / Y_NAME)
    (out_dir / SUMMARY_NAME).write_text(json.dumps(result.summary(), indent=2))
    return result


def load_feedback(out_dir: Path) -> Dataset | None:
    """The exported feedback as a labelled dataset (None when there is none)."""
    out_dir = Path(out_dir)
    x_path = out_dir / X_NAME
    if not x_path.is_file() or len(pd.read_csv(x_path, index_col=0)) == 0:
        return None
    return load_dataset(x_path, out_dir / Y_NAME, out_dir / IMAGES_NAME)


def _file_sha256(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _already_in(base: pd.DataFrame, fb: pd.DataFrame) -> pd.Series:
    """Feedback rows that repeat a base product: same cleaned text and same image bytes (or both none)."""
    by_text: dict[str, list[object]] = {}
    shared = set(base["text"]) & set(fb["text"])
    for text, image in zip(base["text"], base["image_path"], strict=True):
        if text in shared:
            by_text.setdefault(text, []).append(image)
    flags = []
    for text, image in zip(fb["text"], fb["image_path"], strict=True):
        if text not in shared:
            flags.append(False)
            continue
        digest = _file_sha256(image)
        flags.append(any(_file_sha256(b) == digest for b in by_text[text]))
    return pd.Series(flags, index=fb.index, dtype=bool)


def combine(
    base: Dataset, feedback: Dataset | None, exclude_texts: set[str] | None = None
) -> tuple[Dataset, int]:
    """Base products plus feedback products, counting a product once.

    Left out: feedback whose text is an evaluation product's (``exclude_texts``: the evaluation set is
    never trained on, not even through a resubmission) and feedback that repeats a base product (same text
    and image). Returns the dataset and how many feedback rows it holds.
    """
    if feedback is None or len(feedback) == 0:
        return base, 0
    fb = feedback.products
    keep = ~_already_in(base.products, fb)
    if exclude_texts:
        keep &= ~fb["text"].isin(exclude_texts)
    dropped = int((~keep).sum())
    if dropped:
        log.info("%d feedback product(s) left out: already in the base or evaluation data", dropped)
    fb = fb[keep]
    products = pd.concat([base.products, fb], axis=0)
    digest = hashlib.sha256(f"{base.fingerprint}+{feedback.fingerprint}+{sorted(fb.index)}".encode())
    combined = Dataset(
        products=products,
        image_only=base.image_only,
        missing_images=list(base.missing_images) + list(feedback.missing_images),
        extra_labels=base.extra_labels,
        fingerprint=digest.hexdigest(),
        sources={**base.sources, "feedback": feedback.sources.get("x", "")},
    )
    return combined, len(fb)
