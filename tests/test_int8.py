"""int8 ONNX export: static quantization calibrated on a run's training examples, accepted
only when its test accuracy stays within the stated drop of the Keras model's."""

import numpy as np
import onnx
import pytest

from cct_fast.cli import main as cli
from cct_fast.errors import ExportError
from cct_fast.export import load_onnx, quantize, to_onnx
from cct_fast.train.evaluation import load_run, run_examples

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")


def _quantized_gemms(path):
    """Names of the nodes fed by a DequantizeLinear of an int8 weight, and the op types in the
    graph."""
    graph = onnx.load(path).graph
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    weights = {
        n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8
    }
    fed = {n.name: n.op_type for n in graph.node if any(i in weights for i in n.input)}
    return fed, {n.op_type for n in graph.node}


@pytest.mark.parametrize("optimize", [False, True])
def test_a_digits_run_in_int8_keeps_its_accuracy_with_its_gemms_in_int8(
    digits_run, optimize, tmp_path, capsys
):
    folder, trained, _, (images, labels) = digits_run
    out = tmp_path / "int8.onnx"
    arguments = ["export", str(folder), "-o", str(out), "--int8"]
    assert cli(arguments + (["--optimize"] if optimize else [])) == 0
    printed = capsys.readouterr().out
    predictor = load_onnx(out, providers=["CPUExecutionProvider"])
    check = predictor.int8_check
    assert check.examples == len(labels) == 360 and check.max_drop == quantize.DEFAULT_MAX_DROP
    keras_logits = np.asarray(trained.model(images))
    assert check.keras_accuracy == pytest.approx((keras_logits.argmax(1) == labels).mean())
    assert check.keras_accuracy > 0.8 and check.drop <= 0.01
    assert f"{100 * check.int8_accuracy:.2f} % in int8" in printed
    int8_logits = predictor.predict(images)
    assert check.int8_accuracy == pytest.approx((int8_logits.argmax(1) == labels).mean())
    assert (int8_logits.argmax(1) == keras_logits.argmax(1)).mean() >= 0.97

    fed, op_types = _quantized_gemms(out)
    # Every weight GEMM is int8: the tokenizer's two convolutions, and per block qkv (one
    # MatMul, or q, k and v in the fused graph), proj, linear1 and linear2; then the
    # pooling's attention and the head.
    gemms = list(fed.values())
    assert gemms.count("Conv") == 2
    assert gemms.count("MatMul") + gemms.count("Gemm") == 2 * (6 if optimize else 4) + 2
    # What stays in float: the normalisation, the attention's products, softmax.
    assert ("MultiHeadAttention" in op_types) == optimize
    assert {"LayerNormalization", "Softmax"} & op_types


def test_a_text_run_in_int8_keeps_its_accuracy(topic_run, tmp_path):
    run, _ = topic_run
    trained = load_run(run.folder)
    calibration, _ = run_examples(trained, "train", limit=64)
    test = run_examples(trained, "test")
    path = to_onnx(
        trained.model, tmp_path / "t.onnx", dtype="int8", calibration=calibration, validation=test
    )
    predictor = load_onnx(path, providers=["CPUExecutionProvider"])
    assert predictor.int8_check.drop <= 0.01 and predictor.int8_check.examples == len(test[1])
    fed, _ = _quantized_gemms(path)
    assert "MatMul" in fed.values()
    logits = predictor.predict(test[0])
    assert (logits.argmax(1) == test[1]).mean() == pytest.approx(predictor.int8_check.int8_accuracy)


def test_calibrating_on_the_wrong_inputs_is_refused_and_writes_nothing(digits_run, tmp_path):
    _, trained, calibration, test = digits_run
    # Images at a hundredth of their scale: every activation range is measured far too
    # narrow, and the int8 graph clips what the test images really give.
    with pytest.raises(ExportError, match="loses too much accuracy.*in int8 against"):
        to_onnx(
            trained.model,
            tmp_path / "bad.onnx",
            dtype="int8",
            calibration=calibration / 100,
            validation=test,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(dtype="int8"), "needs calibration= .*calibration missing"),
        (dict(dtype="float32", calibration="x", validation="y"), "only an int8 export takes"),
        (
            dict(dtype="int8", calibration=np.zeros((4, 32, 32, 3)), validation="y"),
            r"validation must be \(inputs, labels\); got str",
        ),
        (
            dict(dtype="int8", calibration=np.zeros((4, 28, 28, 3)), validation=("x", [0])),
            r"calibration 'images' of shape \('batch', 32, 32, 3\); got \(4, 28, 28, 3\)",
        ),
        (
            dict(
                dtype="int8",
                calibration=np.zeros((4, 32, 32, 3)),
                validation=(np.zeros((4, 32, 32, 3)), [0, 1]),
            ),
            r"labels must be 4 integer class indices, one per input; got int64 of shape \(2,\)",
        ),
        (
            dict(dtype="int8", calibration="x", validation="y", max_accuracy_drop=5),
            "fraction of top-1 accuracy from 0 to 1",
        ),
    ],
)
def test_bad_int8_arguments_are_refused(digits_run, arguments, message, tmp_path):
    with pytest.raises(ExportError, match=message):
        to_onnx(digits_run[1].model, tmp_path / "m.onnx", **arguments)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_exports_int8_from_run_folders_only(digits_run, tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    assert cli(["export", "cct_2_3x2_32", "-o", out, "--int8"]) != 0
    assert "--int8 exports a run folder" in capsys.readouterr().err
    assert cli(["export", str(digits_run[0]), "-o", out, "--int8", "--fp16"]) != 0
    assert "choose one" in capsys.readouterr().err
    assert cli(["export", str(digits_run[0]), "-o", out, "--int8", "--format", "savedmodel"]) != 0
    assert "--int8 appl" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
