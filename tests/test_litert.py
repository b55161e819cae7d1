"""LiteRT (TFLite) export: float32, float16 weights and int8, each checked in the
ai-edge-litert interpreter against the Keras model."""

import numpy as np
import pytest

import cct_fast
from cct_fast.cli import main as cli
from cct_fast.errors import CctFastError, ExportError
from cct_fast.export import to_tflite
from cct_fast.train.evaluation import load_run, run_examples

from helpers import relative_error, trained_like

litert = pytest.importorskip("ai_edge_litert.interpreter")


def _run(path, **inputs):
    """The file's logits, computed by the interpreter alone (no TensorFlow)."""
    interpreter = litert.Interpreter(model_path=str(path))
    (logits,) = interpreter.get_signature_runner()(**inputs).values()
    return logits


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("float16", 2e-3)])
def test_an_image_model_runs_in_the_interpreter_as_in_keras(dtype, tolerance, tmp_path, rng):
    model = trained_like(cct_fast.create_model("cct_2_3x2_32"), rng)
    path = to_tflite(model, tmp_path / "m.tflite", dtype=dtype, batch_size=4)
    images = rng.standard_normal((4, 32, 32, 3)).astype("float32")
    error = relative_error(_run(path, images=images), model(images))
    assert error <= tolerance
    assert dtype == "float16" or error <= 1e-5


def test_float16_halves_the_file(tmp_path, rng):
    model = trained_like(cct_fast.create_model("cct_2_3x2_32"), rng)
    sizes = {
        d: to_tflite(model, tmp_path / f"{d}.tflite", dtype=d).stat().st_size
        for d in ("float32", "float16")
    }
    assert 0.45 < sizes["float16"] / sizes["float32"] < 0.6


def test_a_text_model_takes_ids_and_mask(topic_run, tmp_path, rng):
    run, _ = topic_run
    trained = load_run(run.folder)
    (ids, mask), _ = run_examples(trained, "test", limit=3)
    path = to_tflite(trained.model, tmp_path / "t.tflite", batch_size=3)
    logits = _run(path, token_ids=ids, mask=mask)
    assert relative_error(logits, trained.model((ids, mask))) <= 1e-5
    # An int8 check on more examples than the fixed batch, not a multiple of it.
    test = run_examples(trained, "test")
    assert len(test[1]) % 5
    to_tflite(trained.model, tmp_path / "i.tflite", batch_size=5, dtype="int8", validation=test)


def test_a_digits_run_in_int8_keeps_its_accuracy(digits_run, tmp_path, capsys):
    folder, trained, _, (images, labels) = digits_run
    out = tmp_path / "digits.tflite"
    assert cli(["export", str(folder), "-o", str(out), "--format", "tflite", "--int8"]) == 0
    assert "LiteRT, int8, batch 1" in capsys.readouterr().out
    logits = np.concatenate([_run(out, images=image[None]) for image in images[:60]])
    keras = np.asarray(trained.model(images[:60]))
    assert (logits.argmax(1) == keras.argmax(1)).mean() >= 0.95
    float32 = to_tflite(trained.model, tmp_path / "f.tflite")
    assert out.stat().st_size < 0.4 * float32.stat().st_size  # int8 weights


def test_an_int8_export_that_loses_accuracy_is_refused(tmp_path, rng):
    # A head whose classes differ by less than int8 weights resolve (every column one
    # vector, plus a hundredth of a rounding step): the int8 file's argmax then differs from
    # Keras' on some images, against labels Keras gets all right.
    model = trained_like(cct_fast.create_model("cct_2_3x2_32"), rng)
    kernel, bias = model.head.weights
    shared = kernel.numpy()[:, :1]
    step = np.abs(shared).max() / 127
    kernel.assign(shared + 0.01 * step * rng.standard_normal(kernel.shape))
    bias.assign(np.zeros(bias.shape))
    images = rng.standard_normal((256, 32, 32, 3)).astype("float32")
    labels = np.asarray(model(images)).argmax(1)
    with pytest.raises(ExportError, match=r"loses too much accuracy.*against 100.00 % in Keras"):
        to_tflite(
            model,
            tmp_path / "m.tflite",
            dtype="int8",
            validation=(images, labels),
            max_accuracy_drop=0.0,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(dtype="int8"), "needs validation="),
        (dict(dtype="float32", validation=([], [])), "only an int8 export takes it"),
        (dict(dtype="int4"), r"dtype must be one of \['float32', 'float16', 'int8'\]"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
    ],
)
def test_bad_litert_arguments_are_refused(arguments, message, tmp_path):
    with pytest.raises(CctFastError, match=message):
        to_tflite(cct_fast.create_model("cct_2_3x2_32"), tmp_path / "m.tflite", **arguments)
    assert list(tmp_path.iterdir()) == []
