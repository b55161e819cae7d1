"""Speed of the deployed model on a CPU: ``cct_fast``'s ONNX exports in float32 and int8
against what a user of the official model would deploy instead, on the same images.

Rows (CCT-7/3x1, batch 64): ONNX Runtime on ``cct_fast``'s fused graph in float32 and int8 and
on its plain graph in int8; the official PyTorch model exported by ``torch.onnx``, in ONNX
Runtime (float32, and int8 by ``quantize_dynamic``, the tool's advice for transformers) and in
OpenVINO (float32, and int8 as the same static QDQ quantization ``cct_fast`` uses, which
OpenVINO reads); OpenVINO on ``cct_fast``'s plain graph in float32 and int8; LiteRT
(``ai-edge-litert``, XNNPACK, all cores) on ``cct_fast``'s float32 and int8 (dynamic range)
files at the same fixed batch. And, for text (``text_cct_2``, 64 sentences of a made-up
vocabulary), the raw-text ONNX graph, tokenizer inside, against the two ways to deploy without
it: tensorflow-text's ``TextEncoder`` feeding ONNX Runtime the token ids, and the SavedModel
export (tensorflow-text inside) loaded in TensorFlow. Weights are
fresh: speed does not depend on them, and the int8 exports' accuracy is checked on digits by
``benchmarks/int8_digits.py``. The int8 graphs are calibrated on 256 random images and checked
against Keras' own predictions on 64 others (agreement, with no drop enforced).
"""

import importlib.util
import os

import numpy as np
import pytest

import cct_fast
from cct_fast.testing.official_torch import official_model, official_module

from targets import (
    DEPLOY,
    DEPLOY_TEXT,
    FUSED_FLOAT32,
    FUSED_INT8,
    OFFICIAL_INT8,
    OFFICIAL_OPENVINO_INT8,
)
from workloads import macs_per_image, random_batch

NAME, BATCH = "cct_7_3x1_32", 64  # as DEPLOY names them
SMOKE_NAME = "cct_2_3x2_32"  # the smoke run's: its exports take seconds, not a minute
CALIBRATION_IMAGES = 256
RAW_TEXT_ONNX = "ONNX Runtime, cct_fast raw-text graph (tokenizer inside), float32"


def _onnx_session(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def _openvino(path):
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU")
    return lambda images: compiled(images)[0]


def _official_exports(config, folder, calibration):
    """The official model exported by ``torch.onnx`` (NCHW input) in float32, and int8 by
    ONNX Runtime's dynamic and static (QDQ) quantization."""
    import onnx
    import torch
    from onnxruntime import quantization

    from cct_fast.export import quantize

    model = official_model(config).eval()
    float32 = folder / "official.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(2, 3, *config.image_size),),
        float32,
        input_names=["images"],
        dynamic_axes={"images": {0: "batch"}},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
    )
    dynamic = folder / "official_dynamic.onnx"
    quantization.quantize_dynamic(float32, dynamic, weight_type=quantization.QuantType.QInt8)
    static = folder / "official_static.onnx"
    nchw = calibration.transpose(0, 3, 1, 2).copy()
    onnx.save(quantize.quantize_static(onnx.load(float32), {"images": nchw}), static)
    return {"float32": float32, "dynamic": dynamic, "static": static}


def _litert(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner()
    return lambda images: runner(images=images)


def _litert_rows(model, folder, batch, validation):
    """LiteRT float32 and int8 (dynamic range) at the benchmark's fixed batch."""
    from cct_fast.export import to_tflite

    float32 = to_tflite(model, folder / "float32.tflite", batch_size=batch)
    int8 = to_tflite(
        model,
        folder / "int8.tflite",
        batch_size=batch,
        dtype="int8",
        validation=validation,
        max_accuracy_drop=1.0,
    )
    return {"LiteRT, float32": _litert(float32), "LiteRT, int8 (dynamic range)": _litert(int8)}


def _cct_fast_exports(model, folder, calibration, validation):
    from cct_fast.export import to_onnx

    int8 = dict(
        dtype="int8",
        calibration=calibration,
        validation=validation,
        max_accuracy_drop=1.0,
    )
    return {
        "fused float32": to_onnx(model, folder / "fused.onnx", optimize=True),
        "plain float32": to_onnx(model, folder / "plain.onnx"),
        "fused int8": to_onnx(model, folder / "fused_int8.onnx", optimize=True, **int8),
        "plain int8": to_onnx(model, folder / "plain_int8.onnx", **int8),
    }


def test_deploy(time_rows, smoke, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    model = cct_fast.create_model(SMOKE_NAME if smoke else NAME)
    config = model.config
    batch = 2 if smoke else BATCH
    images, _ = random_batch(config, batch)
    calibration, _ = random_batch(config, 8 if smoke else CALIBRATION_IMAGES, seed=1)
    check_images, _ = random_batch(config, 8 if smoke else 64, seed=2)
    # Labels the Keras model gets all right: the int8 checks then report agreement with it.
    validation = (check_images, np.asarray(model(check_images)).argmax(1))
    ours = _cct_fast_exports(model, tmp_path, calibration, validation)
    rows = {
        FUSED_FLOAT32: _onnx_session(ours["fused float32"]),
        FUSED_INT8: _onnx_session(ours["fused int8"]),
        "ONNX Runtime, cct_fast plain graph, int8": _onnx_session(ours["plain int8"]),
    }
    missing, official = {}, {}
    if official_module() is None:
        missing["official rows"] = "torch and vit-pytorch are not installed"
    else:
        official = _official_exports(config, tmp_path, calibration)
        rows["ONNX Runtime, official torch.onnx export, float32"] = _onnx_session(
            official["float32"]
        )
        rows[OFFICIAL_INT8] = _onnx_session(official["dynamic"])
    try:
        import openvino  # noqa: F401

        rows["OpenVINO, cct_fast plain graph, float32"] = _openvino(ours["plain float32"])
        rows["OpenVINO, cct_fast plain graph, int8"] = _openvino(ours["plain int8"])
        if official:
            rows["OpenVINO, official torch.onnx export, float32"] = _openvino(official["float32"])
            rows[OFFICIAL_OPENVINO_INT8] = _openvino(official["static"])
    except ImportError:
        missing["OpenVINO rows"] = "openvino is not installed (pip install 'cct-fast[deploy]')"
    try:
        rows.update(_litert_rows(model, tmp_path, batch, validation))
    except ImportError:
        missing["LiteRT rows"] = "ai-edge-litert is not installed (pip install 'cct-fast[litert]')"
    nchw = images.transpose(0, 3, 1, 2).copy()
    timed = {
        row: (lambda f=function, x=(nchw if "official" in row else images): f(x))
        for row, function in rows.items()
    }
    time_rows(DEPLOY, timed, batch, 2 * macs_per_image(config), missing)


def _made_up_texts(count, rng):
    """A WordPiece vocabulary of made-up words and suffixes, and ``count`` sentences of 8 to
    48 of its words, some inflected, capitalised or followed by punctuation."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "bri", "sto"]
    words = sorted({"".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(3000)})
    suffixes = ["s", "ed", "ing", "ly", "er"]
    vocabulary = ["[UNK]", "[PAD]", *".,;:!?'-()", *words, *(f"##{s}" for s in suffixes)]
    texts = []
    for _ in range(count):
        chosen = []
        for _ in range(rng.integers(8, 49)):
            word = str(rng.choice(words)) + (
                str(rng.choice(suffixes)) if rng.random() < 0.2 else ""
            )
            word = word.capitalize() if rng.random() < 0.1 else word
            chosen.append(word + (str(rng.choice(list(".,;!?"))) if rng.random() < 0.1 else ""))
        texts.append(" ".join(chosen))
    return vocabulary, texts


def test_deploy_raw_text(time_rows, smoke, tmp_path):
    if importlib.util.find_spec("onnxruntime_extensions") is None:  # not imported: see
        pytest.skip("onnxruntime-extensions is not installed")  # text_graph.library_path
    import tensorflow as tf

    from cct_fast.data.text_encoder import TextEncoder
    from cct_fast.export import load_onnx, to_onnx, to_saved_model

    vocabulary, texts = _made_up_texts(2 if smoke else BATCH, np.random.default_rng(0))
    model = cct_fast.create_model("text_cct_2", vocab_size=len(vocabulary), num_classes=4)
    encoder = TextEncoder(vocabulary, seq_len=model.config.seq_len)
    raw = load_onnx(
        to_onnx(model, tmp_path / "raw.onnx", encoder=encoder), ["CPUExecutionProvider"]
    )
    ids = load_onnx(to_onnx(model, tmp_path / "ids.onnx"), ["CPUExecutionProvider"])
    served = tf.saved_model.load(str(to_saved_model(model, tmp_path / "served", encoder=encoder)))
    strings = np.array(texts, dtype=object)
    rows = {
        RAW_TEXT_ONNX: lambda: raw.session.run(["probabilities"], {"texts": strings}),
        "tensorflow-text TextEncoder, then ONNX Runtime on the token ids": lambda: ids.predict(
            [np.asarray(value) for value in encoder(texts)]
        ),
        "TensorFlow, the SavedModel export (tensorflow-text inside)": lambda: served.serve(
            tf.constant(texts)
        )["probabilities"].numpy(),
    }
    time_rows(DEPLOY_TEXT, rows, len(texts), macs_per_image(model.config))
