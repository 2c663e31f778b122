"""Quantise the packaged EfficientNet-Lite0 encoder to int8 for serving: ``efficientnet_lite0_int8.onnx``.

Starts from the float encoder that ``scripts/export_image_encoder.py`` wrote (no torch needed here):

1. prepends the normalisation, so that the model takes what :func:`prodtype.ml.image.preprocess` gives,
   NHWC uint8 (batch, 224, 224, 3): ``Cast -> (x - 127) / 128 -> Transpose to NCHW``;
2. quantises it statically with onnxruntime (QDQ format, int8 weights per channel in a 7-bit range, uint8
   activations, MinMax calibration) on product photos, preprocessed exactly as the service preprocesses them
   (JPEG DCT-scaled decoding included);
3. checks the result on other photos (cosine of the 1280-d features) against the float model and against the
   quantised graph run without integer kernels (this CPU's kernels must compute what it means), and writes
   the ONNX file and its spec (``efficientnet_lite0_int8.json``: preprocessing, checksum, calibration) to
   ``src/prodtype/assets/``.

    python scripts/quantize_image_encoder.py [--photos ../shared/data/rakuten/image_train] [--count 300]

The calibration photos are the first ``--count`` JPEGs of the folder in name order, so the result is
reproducible; the script quantises twice and checks the bytes match. The photos themselves are not stored,
only the activation ranges the quantiser derives from them.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from prodtype.ml.image import EncoderSpec, decode_image, load_spec, preprocess

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "prodtype" / "assets"
FLOAT_SPEC = ASSETS / "efficientnet_lite0_features.json"
ONNX_NAME = "efficientnet_lite0_int8.onnx"
SPEC_NAME = "efficientnet_lite0_int8.json"
INPUT_NAME = "pixels"
# JPEGs are decoded at the smallest DCT scale whose long side is still >= this: a 500x500 catalogue photo
# is decoded at 250x250 (4x fewer pixels to decode), whose centre crop is then resized to 224.
DECODE_MIN_SIDE = 224
# Against the float network: 7-bit weights cost some parity (0.958 mean, 0.78 min on the sample's 200
# held-out photos) but not accuracy (the photo branch alone: 0.424 against 0.407 for the float network).
MIN_COSINE_MEAN = 0.94
MIN_COSINE = 0.70
# Against the same graph run without onnxruntime's integer kernels (QDQ nodes in float arithmetic): what the
# CPU computes must be what the quantised graph means (a saturating kernel gave 0.86 mean, 0.49 min).
MIN_KERNEL_COSINE = 0.998


def with_normalisation(float_model: onnx.ModelProto, spec: EncoderSpec) -> onnx.ModelProto:
    """The float model with a uint8 NHWC input, normalised inside the graph."""
    model = copy.deepcopy(float_model)
    graph = model.graph
    old_input = graph.input[0].name
    mean = np.array(spec.mean, np.float32).reshape(1, 3, 1, 1)
    inv_std = (1.0 / np.array(spec.std, np.float32)).reshape(1, 3, 1, 1)
    graph.initializer.extend(
        [numpy_helper.from_array(mean, "norm_mean"), numpy_helper.from_array(inv_std, "norm_scale")]
    )
    prefix = [
        helper.make_node("Cast", [INPUT_NAME], ["pixels_f"], to=TensorProto.FLOAT, name="pixels_cast"),
        helper.make_node("Transpose", ["pixels_f"], ["pixels_nchw"], perm=[0, 3, 1, 2], name="pixels_nchw"),
        helper.make_node("Sub", ["pixels_nchw", "norm_mean"], ["pixels_centred"], name="pixels_centre"),
        helper.make_node("Mul", ["pixels_centred", "norm_scale"], [old_input], name="pixels_scale"),
    ]
    nodes = [*prefix, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    size = spec.input_size
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", size, size, 3]))
    model.doc_string = (
        "EfficientNet-Lite0 (ImageNet) pooled 1280-d features, int8 (static QDQ); input (N,224,224,3) uint8 "
        "RGB, normalised in the graph. See efficientnet_lite0_int8.json."
    )
    return model


class _Photos(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self._items = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._items, None)
        return None if batch is None else {INPUT_NAME: batch}


def prepared(paths: list[Path], spec: EncoderSpec) -> np.ndarray:
    return np.stack([preprocess(decode_image(p.read_bytes(), min_side=DECODE_MIN_SIDE), spec) for p in paths])


def quantise(normalised: onnx.ModelProto, calibration: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        source, pre, out = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        onnx.save(normalised, source)
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            _Photos([calibration[i : i + 1] for i in range(len(calibration))]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            # int8 weights in 7 bits (reduce_range). On x86 CPUs without VNNI (AVX2 only, e.g. the AMD EPYC of
            # 2026-12-02) onnxruntime's u8 x s8 kernel adds pairs of products in 16 bits (VPMADDUBSW): with
            # 8-bit weights the sums saturated and the features fell to a cosine of 0.86 with what the graph
            # means. 255 x 63 x 2 = 32,130 cannot saturate, so every CPU computes the same features (check
            # below). uint8 weights (u8 x u8) are exact too but are not fused: 60 ms a photo, not 9.6.
            weight_type=QuantType.QInt8,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(out)
        model.doc_string = normalised.doc_string
        onnx.checker.check_model(model)
        return model.SerializeToString()


def features(model: bytes, name: str, output: str, batch: np.ndarray, *, optimise: bool = True) -> np.ndarray:
    """The model's features for ``batch``; ``optimise=False`` runs the QDQ graph node by node in float
    arithmetic (no fused integer kernels): the reference for what a quantised graph means."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run([output], {name: batch[i : i + 16]})[0] for i in range(0, len(batch), 16)]
    )


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12))


def spec_json(
    model: bytes, float_spec: dict[str, Any], calibration: list[Path], parity: dict[str, float]
) -> dict[str, Any]:
    pre = copy.deepcopy(float_spec["preprocessing"])
    pre.update(
        {
            "layout": "NHWC",
            "dtype": "uint8",
            "decode_min_side": DECODE_MIN_SIDE,
            "formula": "(pixel - mean) / std, per channel, on 0..255 RGB values, inside the graph",
        }
    )
    names = hashlib.sha256("\n".join(p.name for p in calibration).encode()).hexdigest()
    return {
        "name": "efficientnet_lite0_int8",
        "onnx_file": ONNX_NAME,
        "onnx_sha256": hashlib.sha256(model).hexdigest(),
        "onnx_bytes": len(model),
        "opset": float_spec["opset"],
        "input_name": INPUT_NAME,
        "output_name": float_spec["output_name"],
        "feature_dim": float_spec["feature_dim"],
        "features": float_spec["features"],
        "preprocessing": pre,
        "quantisation": {
            "from": {"onnx_file": float_spec["onnx_file"], "onnx_sha256": float_spec["onnx_sha256"]},
            "format": "QDQ, static",
            "weights": "int8 in 7 bits (reduce_range), per channel: no saturation without VNNI",
            "activations": "uint8, per tensor",
            "calibration": {
                "method": "MinMax",
                "photos": len(calibration),
                "photo_names_sha256": names,
            },
            "parity_with_float": parity,
            "packages": {name: version(name) for name in ("onnxruntime", "onnx")},
        },
        "source": float_spec["source"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--photos", type=Path, default=ROOT.parent / "shared" / "data" / "rakuten" / "image_train"
    )
    parser.add_argument("--count", type=int, default=300, help="calibration photos")
    parser.add_argument("--check", type=int, default=200, help="other photos for the parity check")
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args(argv)

    photos = sorted(args.photos.glob("*.jpg"))
    if len(photos) < args.count + args.check:
        print(f"error: {args.photos} has {len(photos)} JPEGs; need {args.count + args.check}")
        return 1
    spec = load_spec(FLOAT_SPEC)
    float_raw = json.loads(FLOAT_SPEC.read_text(encoding="utf-8"))
    float_bytes = spec.onnx_path.read_bytes()
    normalised = with_normalisation(onnx.load_from_string(float_bytes), spec)
    calibration = photos[: args.count]
    calib = prepared(calibration, spec)
    first = quantise(normalised, calib)
    if quantise(normalised, calib) != first:
        print("error: two quantisations of the same model differ; the ONNX file would not be reproducible")
        return 1

    held_out = prepared(photos[-args.check :], spec)
    reference = features(float_bytes, spec.input_name, spec.output_name, spec.model_input(held_out))
    quantised = features(first, INPUT_NAME, spec.output_name, held_out)
    cos = cosines(reference, quantised)
    kernel = cosines(features(first, INPUT_NAME, spec.output_name, held_out, optimise=False), quantised)
    parity = {
        "photos": len(held_out),
        "cosine_mean": round(float(cos.mean()), 4),
        "cosine_min": round(float(cos.min()), 4),
        "kernel_cosine_min": round(float(kernel.min()), 4),
    }
    if cos.mean() < MIN_COSINE_MEAN or cos.min() < MIN_COSINE:
        print(f"error: int8 features drift from the float model's: {parity}")
        return 1
    if kernel.min() < MIN_KERNEL_COSINE:
        print(f"error: this CPU's integer kernels do not compute what the quantised graph means: {parity}")
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ONNX_NAME).write_bytes(first)
    meta = spec_json(first, float_raw, calibration, parity)
    (args.out / SPEC_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out / ONNX_NAME} ({len(first) / 1e6:.2f} MB, sha256 {meta['onnx_sha256']})")
    print(f"parity with the float encoder on {parity['photos']} held-out photos: {parity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
