"""Model commands: ``train``, ``evaluate``, ``predict`` and ``predict-batch``.

Each command is a thin wrapper over a plain function (``prodtype.ml.train.train_model``,
``prodtype.ml.evaluate.evaluate``, ``ModelBundle.predict``, ``prodtype.ml.batch.predict_file``).
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prodtype.catalog import CatalogError, load_catalog
from prodtype.cli.errors import exit_on
from prodtype.config import cache_dirs, get_settings

console = Console(stderr=True)

XOpt = Annotated[Path, typer.Option("--x", help="X csv (',designation,description,productid,imageid')")]
YOpt = Annotated[Path, typer.Option("--y", help="Y csv (',prdtypecode'), same index as X")]
ImagesOpt = Annotated[
    Path | None, typer.Option("--images", help="Folder of image_<imageid>_product_<productid>.jpg")
]
ModelOpt = Annotated[Path, typer.Option("--model", help="Model bundle folder")]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Feature cache [default: PRODTYPE_STORAGE_DIR/cache]"),
]


def user_errors() -> AbstractContextManager[None]:
    """Bad files, bundles, images and values: one red line naming what was wrong, exit status 2. (The
    model's modules load here, when a command runs: ``prodtype --help`` needs none of them.)"""
    from prodtype.data.challenge import DataError
    from prodtype.ml.bundle import BundleError
    from prodtype.ml.image import ImageError

    return exit_on((DataError, BundleError, ImageError, CatalogError, FileNotFoundError, ValueError), 2)


def _cache_dirs(cache_dir: Path | None) -> tuple[Path, Path]:
    return cache_dirs(cache_dir or (get_settings().storage_dir / "cache"))


def train(
    x: XOpt,
    y: YOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model bundle to")],
    images: ImagesOpt = None,
    image_only: Annotated[
        Path | None, typer.Option("--image-only", help="Labelled images without text (imageid,productid,...)")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (folds, classifiers)")] = 42,
    profile: Annotated[
        str,
        typer.Option(
            help="fast (default: milliseconds per product) or accurate (e5 sentence embeddings, ~0.1-0.2 s "
            "more per product; no better on the sample); --embedder/--image-encoder override it"
        ),
    ] = "fast",
    embedder: Annotated[
        str | None,
        typer.Option(
            help="Text embeddings: use-q8+title+fr-vectors (sentence vectors of the text and title, int8, "
            "beside their mean French word vectors), use-q8+title, use-q8, use (float), e5, e5+title, "
            "e5+title+fr-vectors, fr-vectors, fr-vectors+title or none [profile's]"
        ),
    ] = None,
    image_encoder: Annotated[
        str | None,
        typer.Option("--image-encoder", help="Photo encoder: lite0-int8 (fast) or lite0 (float) [profile's]"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle at --out")] = False,
    cache_dir: CacheOpt = None,
    warm_from: Annotated[
        Path | None,
        typer.Option(
            "--warm-from",
            help="The bundle this model replaces: a warm retrain keeps its TF-IDF vocabulary and fusion and "
            "skips the out-of-fold fits (see --retrain)",
        ),
    ] = None,
    retrain: Annotated[
        str,
        typer.Option(
            help="With --warm-from: auto (warm from 20,000 products when the data grew by at most 25 %), "
            "warm or full"
        ),
    ] = "auto",
) -> None:
    """Train the multimodal model and write a model bundle."""
    from prodtype.ml.bundle import check_target
    from prodtype.ml.train import PreviousModel, TrainConfig, train_model

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors():
        overrides: dict[str, Any] = {"seed": seed, "retrain": retrain}
        if embedder is not None:
            overrides["embedder"] = None if embedder == "none" else embedder
        if image_encoder is not None:
            overrides["image_encoder"] = image_encoder
        config = TrainConfig.build(profile, **overrides)
        check_target(out, overwrite)
        if retrain == "warm" and warm_from is None:
            raise ValueError("--retrain warm needs --warm-from: the bundle of the model this one replaces")
        previous = PreviousModel.load(warm_from) if warm_from is not None else None
        from prodtype.data.challenge import load_dataset

        dataset = load_dataset(x, y, images, image_only)
        console.print(
            f"{len(dataset)} products ({len(dataset.missing_images)} without an image), "
            f"{len(dataset.image_only)} image-only labelled images"
        )
        img_cache, text_cache = _cache_dirs(cache_dir)
        path = train_model(
            dataset,
            out,
            config,
            image_cache_dir=img_cache,
            text_cache_dir=text_cache,
            overwrite=overwrite,
            catalog=load_catalog(get_settings().categories_file),
            previous=previous,
        )
    manifest = json.loads((path / "manifest.json").read_text())
    oof = manifest["metrics"]["out_of_fold"]
    report = json.loads((path / "training_report.json").read_text())
    if "weighted_f1" in oof:
        figures = f"out-of-fold weighted F1 {oof['weighted_f1']:.4f}, accuracy {oof['accuracy']:.4f}"
    else:
        figures = "no out-of-fold figures (warm retrain: evaluate it with prodtype evaluate)"
    how = report.get("retrain", {})
    note = f"\n{how['mode']} retrain: {escape(how['reason'])}" if how.get("previous") else ""
    console.print(f"model {manifest['version']} written to {path}\n{figures}{note}", soft_wrap=True)


def evaluate(
    model: ModelOpt,
    x: XOpt,
    y: YOpt,
    images: ImagesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Where to write report.md and its plots")
    ] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Score a model bundle on labelled data: weighted F1 (official metric), macro F1, accuracy, per class."""
    from prodtype.ml.bundle import load_bundle
    from prodtype.ml.evaluate import evaluate as run_evaluation
    from prodtype.ml.evaluate import write_report

    with user_errors():
        bundle = load_bundle(model)
        from prodtype.data.challenge import load_dataset

        dataset = load_dataset(x, y, images)
        img_cache, _ = _cache_dirs(cache_dir)
        result = run_evaluation(bundle, dataset, image_cache_dir=img_cache, progress=not as_json)
        names = {c: bundle.category(c) for c in bundle.classes}
        report = write_report(result, report_dir or (model / "evaluation"), names)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    table = Table(title=f"model {result.model_version}")
    for col in ("subset", "n", "weighted F1", "macro F1", "accuracy"):
        table.add_column(col)
    for name, s in (("all", result), ("with image", result.with_image), ("text only", result.text_only)):
        table.add_row(
            name,
            str(s.n),
            *(("n/a" if v is None else f"{v:.4f}") for v in (s.weighted_f1, s.macro_f1, s.accuracy)),
        )
    Console().print(table)
    console.print(f"report: {report}")


def predict(
    model: ModelOpt,
    designation: Annotated[str, typer.Option(help="Product title")],
    description: Annotated[str, typer.Option(help="Product description (may hold HTML)")] = "",
    image: Annotated[Path | None, typer.Option(help="Product photo (JPEG, PNG, WebP…)")] = None,
    k: Annotated[int, typer.Option(min=1, max=27, help="How many candidates to list")] = 5,
) -> None:
    """Predict the product type of one product; prints JSON."""
    from prodtype.data.text import clean_text
    from prodtype.ml.bundle import load_bundle

    with user_errors():
        if not clean_text(designation):
            raise ValueError("--designation is empty; every product needs a title")
        data = image.read_bytes() if image is not None else None
        prediction = load_bundle(model).predict(designation, description, data, k=k)
    typer.echo(json.dumps(prediction.to_dict(), ensure_ascii=False))


def predict_batch(
    model: ModelOpt,
    x: XOpt,
    out: Annotated[Path, typer.Option("--out", help="Submission csv to write (',prdtypecode')")],
    images: ImagesOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Predict every product of an X file, streamed, in the challenge's submission format."""
    from prodtype.ml.batch import predict_file
    from prodtype.ml.bundle import load_bundle

    with user_errors():
        img_cache, _ = _cache_dirs(cache_dir)
        n = predict_file(load_bundle(model), x, images, out, image_cache_dir=img_cache)
    console.print(f"{n} predictions written to {out}")


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(predict)
    app.command("predict-batch")(predict_batch)
