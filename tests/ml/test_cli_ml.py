"""The model commands through the real CLI app: evaluate --json, predict, predict-batch, train, and user
errors (exit status 2, one line on stderr, no traceback).

Feature caches are shared with the rest of the session through ``--cache-dir`` (links to the test cache).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from prodtype.catalog import load_catalog
from prodtype.cli import app
from prodtype.ml.bundle import load_bundle

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cache_dir(feature_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``--cache-dir`` whose image-feature and text-embedding folders are the session's test caches."""
    root = tmp_path_factory.mktemp("cli-cache")
    for name, target in (("image-features", "image"), ("text-embeddings", "text")):
        (feature_cache_dir / target).mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(feature_cache_dir / target, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def labelled_files(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """150 sample products, 60 of them with an image, as X/Y files (quicker to evaluate than the sample)."""
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)
    present = {p.name for p in (data_dir / "image_train").iterdir()}
    has = pd.Series(
        [f"image_{i}_product_{p}.jpg" in present for i, p in zip(x["imageid"], x["productid"], strict=True)],
        index=x.index,
    )
    rows = x.index[has][:60].union(x.index[~has][:90])
    root = tmp_path_factory.mktemp("labelled")
    x.loc[rows].to_csv(root / "X.csv")
    y.loc[rows].to_csv(root / "Y.csv")
    return root / "X.csv", root / "Y.csv"


def run(*args: str | Path) -> Result:
    with threadpool_limits(1):  # BLAS threads on the 2 shared cores spin against each other (train)
        return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result: Result, *parts: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for part in parts:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    return lines[0]


# -- evaluate ---------------------------------------------------------------------------------------------


def test_evaluate_json_prints_one_object_and_writes_the_report(
    trained_bundle: Path, labelled_files: tuple[Path, Path], data_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    x, y = labelled_files
    report_dir = tmp_path / "report"
    result = run(
        "evaluate",
        "--model",
        trained_bundle,
        "--x",
        x,
        "--y",
        y,
        "--images",
        data_dir / "image_train",
        "--json",
        "--report-dir",
        report_dir,
        "--cache-dir",
        cache_dir,
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    metrics = json.loads(result.stdout)
    assert isinstance(metrics, dict)
    assert {"weighted_f1", "macro_f1", "accuracy", "n", "per_class", "with_image", "text_only"} <= set(
        metrics
    )
    assert metrics["n"] == 150
    assert metrics["with_image"]["n"] == 60 and metrics["text_only"]["n"] == 90
    for key in ("weighted_f1", "macro_f1", "accuracy"):
        assert 0 <= metrics[key] <= 1
    assert metrics["accuracy"] > 0.5, "these products were in the training set"
    assert set(metrics["per_class"]) <= {str(c) for c in load_catalog().codes}
    assert {"precision", "recall", "f1", "support"} == set(next(iter(metrics["per_class"].values())))
    assert sum(m["support"] for m in metrics["per_class"].values()) == 150

    assert (report_dir / "report.md").read_text(encoding="utf-8").startswith("# Evaluation of model")
    for png in ("confusion_matrix.png", "per_class_f1.png"):
        assert (report_dir / png).read_bytes().startswith(PNG)
    assert not (trained_bundle / "evaluation").exists(), "the shared bundle is left untouched"


def test_evaluate_without_json_prints_a_table(
    trained_bundle: Path, labelled_files: tuple[Path, Path], cache_dir: Path, tmp_path: Path
) -> None:
    x, y = labelled_files
    result = run(
        "evaluate",
        "--model",
        trained_bundle,
        "--x",
        x,
        "--y",
        y,
        "--report-dir",
        tmp_path,
        "--cache-dir",
        cache_dir,
    )
    assert result.exit_code == 0, result.output
    assert "weighted F1" in result.stdout and "text only" in result.stdout
    assert f"report: {tmp_path / 'report.md'}" in result.stderr.replace("\n", "")


# -- predict ----------------------------------------------------------------------------------------------


def test_predict_prints_json(trained_bundle: Path, sample_dataset) -> None:  # type: ignore[no-untyped-def]
    products = sample_dataset.products
    photo = products.loc[(products["label"] == 2583) & products["image_path"].notna(), "image_path"].iloc[0]
    result = run(
        "predict",
        "--model",
        trained_bundle,
        "--designation",
        "Pompe de filtration pour piscine",
        "--description",
        "<p>6 m3/h</p>",
        "--image",
        photo,
        "--k",
        "3",
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert {"prdtypecode", "category", "confidence", "top_k"} <= set(answer)
    assert answer["prdtypecode"] == 2583
    assert answer["category"] == load_catalog().name(2583)
    assert answer["has_image"] is True
    assert len(answer["top_k"]) == 3
    assert answer["top_k"][0] == {
        "prdtypecode": answer["prdtypecode"],
        "category": answer["category"],
        "probability": answer["confidence"],
    }


# -- predict-batch ----------------------------------------------------------------------------------------


def test_predict_batch_writes_the_submission_format(
    trained_bundle: Path, data_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sub" / "submission.csv"
    result = run(
        "predict-batch",
        "--model",
        trained_bundle,
        "--x",
        data_dir / "X_test_sample.csv",
        "--images",
        data_dir / "image_test",
        "--out",
        out,
        "--cache-dir",
        cache_dir,
    )
    assert result.exit_code == 0, result.output
    x_test = pd.read_csv(data_dir / "X_test_sample.csv", index_col=0)
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["", "prdtypecode"]
    assert len(rows) == len(x_test) + 1 == 500
    assert [int(r[0]) for r in rows[1:]] == x_test.index.tolist()
    assert {int(r[1]) for r in rows[1:]} <= set(load_catalog().codes)
    assert len({r[1] for r in rows[1:]}) > 5, "not one constant answer"
    assert f"{len(x_test)} predictions written" in result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["submission.csv"], "no temporary file left behind"


def test_predict_batch_of_a_header_only_file_writes_a_header_only_submission(
    trained_bundle: Path, tmp_path: Path
) -> None:
    (tmp_path / "X.csv").write_text(",designation,description,productid,imageid\n", encoding="utf-8")
    result = run(
        "predict-batch", "--model", trained_bundle, "--x", tmp_path / "X.csv", "--out", tmp_path / "o.csv"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.csv").read_text(encoding="utf-8").splitlines() == [",prdtypecode"]


# -- train ------------------------------------------------------------------------------------------------


def test_train_writes_a_bundle_and_refuses_to_overwrite_it(
    data_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """A small text-only run (135 products, no sentence embeddings): the command is tested, not the model."""
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)
    rows = y.groupby("prdtypecode", group_keys=False).apply(lambda g: g.head(5)).index.sort_values()
    x.loc[rows].to_csv(tmp_path / "X.csv")
    y.loc[rows].to_csv(tmp_path / "Y.csv")
    args = [
        "train",
        "--x",
        tmp_path / "X.csv",
        "--y",
        tmp_path / "Y.csv",
        "--out",
        tmp_path / "model",
        "--embedder",
        "none",
        "--cache-dir",
        cache_dir,
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "out-of-fold weighted F1" in result.stderr
    bundle = load_bundle(tmp_path / "model")
    assert bundle.classes == load_catalog().codes
    assert bundle.manifest["embedder"] is None

    assert_user_error(run(*args), str(tmp_path / "model"), "not empty")
    assert run(*args, "--overwrite").exit_code == 0

    # a warm retrain from it: the vocabulary is the first model's, the mode and its reason are printed
    warm = [*args[:5], "--out", tmp_path / "warm", *args[7:], "--warm-from", tmp_path / "model"]
    result = run(*warm, "--retrain", "warm")
    assert result.exit_code == 0, result.output
    assert "no out-of-fold figures (warm retrain" in result.stderr
    assert "warm retrain: warm retrain asked (retrain=warm); fusion fitted on 135 products" in result.stderr
    assert (tmp_path / "warm" / "tfidf.json").read_bytes() == (tmp_path / "model" / "tfidf.json").read_bytes()
    result = run(*warm, "--overwrite")  # auto: 135 products are far under warm_min_products
    assert result.exit_code == 0, result.output
    assert "full retrain: the previous fusion was fitted on 135 products, under warm_min_products" in (
        result.stderr  # one line, never wrapped
    )
    result = run(*warm[:-2], "--out", tmp_path / "w2", "--retrain", "warm")
    assert_user_error(result, "--retrain warm needs --warm-from")
    assert_user_error(run(*warm, "--retrain", "often"), "TrainConfig.retrain='often'", "auto")
    missing = [*warm[:5], "--out", tmp_path / "w3", *warm[7:-1], tmp_path / "nothing"]
    assert_user_error(run(*missing), str(tmp_path / "nothing"), "does not exist")


# -- user errors ------------------------------------------------------------------------------------------


def test_missing_files_are_user_errors(
    trained_bundle: Path, labelled_files: tuple[Path, Path], tmp_path: Path
) -> None:
    x, y = labelled_files
    nope = tmp_path / "nope.csv"
    assert_user_error(
        run("evaluate", "--model", trained_bundle, "--x", nope, "--y", y), str(nope), "does not exist"
    )
    assert_user_error(
        run("evaluate", "--model", trained_bundle, "--x", x, "--y", nope), str(nope), "does not exist"
    )
    assert_user_error(
        run("predict-batch", "--model", trained_bundle, "--x", nope, "--out", tmp_path / "o.csv"), str(nope)
    )
    assert not (tmp_path / "o.csv").exists()
    assert_user_error(
        run(
            "predict-batch",
            "--model",
            trained_bundle,
            "--x",
            x,
            "--images",
            tmp_path / "imgs",
            "--out",
            tmp_path / "o.csv",
        ),
        str(tmp_path / "imgs"),
        "does not exist",
    )
    assert_user_error(
        run("predict", "--model", trained_bundle, "--designation", "Pompe", "--image", tmp_path / "no.jpg"),
        str(tmp_path / "no.jpg"),
    )
    assert_user_error(
        run("train", "--x", nope, "--y", y, "--out", tmp_path / "m", "--embedder", "none"), str(nope)
    )


def test_bad_bundles_are_user_errors(trained_bundle: Path, tmp_path: Path) -> None:
    assert_user_error(run("predict", "--model", tmp_path / "none", "--designation", "x"), "does not exist")
    broken = Path(shutil.copytree(trained_bundle, tmp_path / "broken"))
    with (broken / "heads.npz").open("ab") as fh:
        fh.write(b"\0")
    assert_user_error(run("predict", "--model", broken, "--designation", "x"), "heads.npz is corrupt")
    (broken / "manifest.json").write_text("{oops", encoding="utf-8")
    assert_user_error(run("predict", "--model", broken, "--designation", "x"), "manifest.json is corrupt")


def test_empty_designation_is_a_user_error(trained_bundle: Path, data_dir: Path, tmp_path: Path) -> None:
    for title in ("", "   ", "<br/>"):
        assert_user_error(
            run("predict", "--model", trained_bundle, "--designation", title), "--designation is empty"
        )
    x = pd.read_csv(data_dir / "X_test_sample.csv", index_col=0, nrows=5)
    x.loc[x.index[2], "designation"] = "  "
    x.to_csv(tmp_path / "X.csv")
    assert_user_error(
        run(
            "predict-batch", "--model", trained_bundle, "--x", tmp_path / "X.csv", "--out", tmp_path / "o.csv"
        ),
        str(tmp_path / "X.csv"),
        f"row {x.index[2]}",
        "column 'designation'",
    )
    assert not (tmp_path / "o.csv").exists()


def test_an_undecodable_image_is_a_user_error(trained_bundle: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not an image at all")
    result = run("predict", "--model", trained_bundle, "--designation", "Pompe piscine", "--image", fake)
    assert_user_error(result)


def test_error_lines_keep_brackets_and_are_never_wrapped(
    trained_bundle: Path, labelled_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """A value like '[Jeu PC]' or a long path is printed as is, on one line (not read as rich markup)."""
    x, y = labelled_files
    folder = tmp_path / ("[a very long folder name that goes past eighty columns on its own]" * 2)
    folder.mkdir()
    labels = pd.read_csv(y, index_col=0).astype(object)
    labels.loc[labels.index[7], "prdtypecode"] = "[Jeu PC]"
    labels.to_csv(folder / "Y.csv")
    line = assert_user_error(run("evaluate", "--model", trained_bundle, "--x", x, "--y", folder / "Y.csv"))
    assert line == (
        f"error: {folder / 'Y.csv'}, row {labels.index[7]}, column 'prdtypecode': "
        "'[Jeu PC]' is not an integer (1 such row(s))"
    )


def _small_training_files(data_dir: Path, tmp_path: Path, per_class: int) -> tuple[Path, Path]:
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)
    rows = y.groupby("prdtypecode", group_keys=False).apply(lambda g: g.head(per_class)).index.sort_values()
    x.loc[rows].to_csv(tmp_path / "X.csv")
    y.loc[rows].to_csv(tmp_path / "Y.csv")
    return tmp_path / "X.csv", tmp_path / "Y.csv"


def test_train_profiles_choose_the_embedder_and_options_override_them(
    data_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    x, y = _small_training_files(data_dir, tmp_path, 3)
    base = ["train", "--x", x, "--y", y, "--cache-dir", cache_dir]
    result = run(*base, "--out", tmp_path / "accurate", "--profile", "accurate")
    assert result.exit_code == 0, result.output
    accurate = load_bundle(tmp_path / "accurate")
    assert accurate.manifest["embedder"] == "e5+title+fr-vectors"
    assert accurate.predict("Piscine tubulaire ronde 3 m").prdtypecode in accurate.classes
    head = accurate.model.embed_head
    assert head is not None and head.coef.shape[1] == 2 * 384 + 600  # e5 of text and title, word vectors

    # the default of before (sentence vectors only) still trains and serves, with its 1,024 inputs
    result = run(*base, "--out", tmp_path / "before", "--embedder", "use-q8+title")
    assert result.exit_code == 0, result.output
    before = load_bundle(tmp_path / "before")
    head = before.model.embed_head
    assert before.manifest["embedder"] == "use-q8+title" and head is not None and head.coef.shape[1] == 1024
    assert before.predict("Piscine tubulaire ronde 3 m").prdtypecode in before.classes

    result = run(*base, "--out", tmp_path / "plain", "--profile", "accurate", "--embedder", "none")
    assert result.exit_code == 0, result.output
    assert load_bundle(tmp_path / "plain").manifest["embedder"] is None

    assert_user_error(run(*base, "--out", tmp_path / "x", "--profile", "turbo"), "turbo", "fast, accurate")
    assert not (tmp_path / "x").exists()
