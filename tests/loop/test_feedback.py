"""Reviewed predictions become challenge-format training data; rejected ones never do."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from loop.records import review, submit
from prodtype.config import Settings
from prodtype.data.challenge import load_dataset
from prodtype.loop.feedback import FEEDBACK_INDEX_OFFSET, combine, export_feedback, load_feedback
from prodtype.serving.storage import LocalImageStore
from service_support.databases import both_databases
from service_support.images import photo, png_of

pytestmark = both_databases


def test_export_writes_the_challenge_format(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = LocalImageStore(settings.images_dir)
    with sessions() as s:
        accepted = submit(s, "Piscine tubulaire ronde", 2583, image=photo(0), store=store)
        corrected = submit(
            s,
            "Figurine Star Wars",
            10,
            description="<b>Yoda</b> &amp; co",
            image=png_of(photo(1)),
            store=store,
        )
        rejected = submit(s, "asdfgh", 2583)
        pending = submit(s, "Jeu PS4", 2462)
        review(s, accepted, "accept")
        review(s, corrected, "accept", 1140)
        review(s, rejected, "reject")
        result = export_feedback(s, store, tmp_path / "fb")
    assert (result.rows, result.with_image, result.rejected_excluded, result.corrected) == (2, 2, 1, 1)

    ds = load_dataset(result.x_path, result.y_path, result.images_dir)  # the official reader reads it
    assert len(ds) == 2 and not ds.missing_images
    labels = dict(zip(ds.products["designation"], ds.products["label"], strict=True))
    assert labels == {"Piscine tubulaire ronde": 2583, "Figurine Star Wars": 1140}
    assert set(ds.products.index) == {
        FEEDBACK_INDEX_OFFSET + accepted.id,
        FEEDBACK_INDEX_OFFSET + corrected.id,
    }
    assert all(Path(p).read_bytes()[:3] == b"\xff\xd8\xff" for p in ds.products["image_path"])  # PNG → JPEG
    assert pending.id not in json.loads((tmp_path / "fb" / "feedback.json").read_text())["prediction_ids"]
    header = (tmp_path / "fb" / "X_feedback.csv").read_text().splitlines()[0]
    assert header == ",designation,description,productid,imageid"


def test_ids_are_stable_across_exports(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = LocalImageStore(settings.images_dir)
    with sessions() as s:
        review(s, submit(s, "Lampe de chevet", 2060), "accept")
        first = export_feedback(s, store, tmp_path / "a")
        review(s, submit(s, "Tapis de yoga", 1280), "accept", 2582)
        second = export_feedback(s, store, tmp_path / "b")
    x1 = pd.read_csv(first.x_path, index_col=0, keep_default_na=False)
    x2 = pd.read_csv(second.x_path, index_col=0, keep_default_na=False)
    assert x1.loc[x1.index[0]].to_dict() == x2.loc[x1.index[0]].to_dict()
    assert len(x2) == 2


def test_a_product_submitted_twice_counts_once_with_its_latest_type(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    store = LocalImageStore(settings.images_dir)
    with sessions() as s:
        a = submit(s, "Coque iPhone 12", 1300, image=photo(2), store=store)
        b = submit(s, "Coque  iPhone 12 ", 1300, image=photo(2), store=store)  # same cleaned text, same image
        c = submit(s, "Coque iPhone 12", 1300, image=photo(3), store=store)  # another image: another product
        review(s, a, "accept", 40)
        review(s, b, "accept", 50)
        review(s, c, "accept", 40)
        result = export_feedback(s, store, tmp_path / "fb")
    assert (result.rows, result.duplicates) == (2, 1)
    y = pd.read_csv(result.y_path, index_col=0)["prdtypecode"]
    assert y[FEEDBACK_INDEX_OFFSET + a.id] == 50  # the latest review wins, under the first id
    assert result.prediction_ids[FEEDBACK_INDEX_OFFSET + a.id] == [a.id, b.id]


def test_combine_counts_base_products_once_and_never_takes_evaluation_texts(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path, data_dir: Path
) -> None:
    base = load_dataset(data_dir / "X_train.csv", data_dir / "Y_train.csv", data_dir / "image_train")
    row = base.products[base.products["image_path"].notna()].iloc[0]
    text_only = base.products[base.products["image_path"].isna()].iloc[0]
    store = LocalImageStore(settings.images_dir)
    with sessions() as s:
        # a resubmitted base product (same text and image): counted once
        review(
            s,
            submit(
                s,
                row["designation"],
                10,
                description=row["description"],
                image=Path(row["image_path"]).read_bytes(),
                store=store,
            ),
            "accept",
        )
        # same text as a base product but no image there (text-only) and none here: also the same product
        review(s, submit(s, text_only["designation"], 10, description=text_only["description"]), "accept")
        review(s, submit(s, "Un produit tout nouveau", 10), "accept")
        review(s, submit(s, "Produit de l'évaluation", 10), "accept")
        export_feedback(s, store, tmp_path / "fb")
    feedback = load_feedback(tmp_path / "fb")
    assert feedback is not None and len(feedback) == 4
    combined, n = combine(base, feedback, exclude_texts={"Produit de l'évaluation"})
    assert n == 1 and len(combined) == len(base) + 1
    assert combined.fingerprint != base.fingerprint
    assert "Un produit tout nouveau" in set(combined.products["designation"])


def test_nothing_reviewed_exports_an_empty_dataset(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as s:
        result = export_feedback(s, LocalImageStore(settings.images_dir), tmp_path / "fb")
    assert result.rows == 0
    assert load_feedback(tmp_path / "fb") is None
