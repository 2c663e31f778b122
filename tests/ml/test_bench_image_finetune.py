"""benchmarks/bench_image_finetune.py, whose figures the README reports, splits the network where it says:
its last layers, before any training, compute the frozen network's own features from the maps it caches,
and fine-tuning changes those layers only in the copy it trains. Needs the ``export`` extra (torch);
``make test`` installs it."""

from __future__ import annotations

import numpy as np
import pytest

from service_support.benchmarks import benchmark_module

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    with benchmark_module("bench_image_finetune", "scripts") as module:
        yield module


def test_last_layers_start_as_the_frozen_networks_features(bench) -> None:  # type: ignore[no-untyped-def]
    from export_image_encoder import build_feature_model

    model = build_feature_model()
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        expected = model(x).numpy()
        pre, post = bench.feature_maps(model.net, x)
        assert pre.shape == (2, 192, 7, 7) and post.shape == (2, 320, 7, 7)
        head = bench.LastLayers(model.net, 27, block=False).eval()
        block = bench.LastLayers(model.net, 27, block=True).eval()
        np.testing.assert_allclose(head.pooled(post).numpy(), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(block.pooled(pre).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_fine_tuning_trains_a_copy_and_keeps_the_batch_norm_statistics(bench) -> None:  # type: ignore[no-untyped-def]
    from export_image_encoder import build_feature_model

    net = build_feature_model().net
    conv_before = net._conv_head.weight.detach().clone()
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(40, 320, 7, 7)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 3, 40))
    tuned = bench.fine_tune(net, x, y, 3, block=False, epochs=2, seed=0)
    assert torch.equal(net._conv_head.weight, conv_before)  # the network itself is untouched
    assert not torch.equal(tuned.conv.weight, conv_before)  # the copy was trained
    assert torch.equal(tuned.bn.running_mean, net._bn1.running_mean)  # statistics fixed
    assert not tuned.training
