"""LiteRT (TFLite) export for phones and small devices, checked in the ``ai-edge-litert``
interpreter before it is written.

The model is converted from the reference implementation (plain TensorFlow) through a
SavedModel and TensorFlow's converter, with LiteRT's built-in operators only, so the file runs
in the bare ``ai-edge-litert`` interpreter (no TensorFlow ops inside). An image model takes
``images`` (float32 NHWC), a text model ``token_ids`` (int32) and ``mask`` (bool); the
output is the float32 logits.

- ``float32``: checked against Keras to a relative error of 1e-5.
- ``float16``: weights stored in float16 and widened when the interpreter loads them (half
  the file); checked to 2e-3.
- ``int8``: LiteRT's dynamic-range quantization: the fully-connected and convolution
  weights in int8, each batch's activations quantized by the interpreter's int8 kernels as
  they run, everything else in float32. No calibration: with a representative dataset,
  TensorFlow's full-integer scheme wrote files that aborted the interpreter
  (ai-edge-litert 2.3.0) on CCT's LayerNorm and attention, and the same scheme with every
  operator but the GEMMs left in float gave 10 % on digits, against 99.17 % dynamic. Checked
  by accuracy on ``validation``, as the ONNX int8 export is.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from cct_fast.base.compare import relative_error
from cct_fast.base.files import atomic_output
from cct_fast.base.optional import require
from cct_fast.core.model import rebuild
from cct_fast.core.text_model import TextCCT
from cct_fast.errors import ConfigError, ExportError
from cct_fast.export import examples, quantize

DTYPES = ("float32", "float16", "int8")
TOLERANCES = {"float32": 1e-5, "float16": 2e-3}


def litert_interpreter():
    """The ``ai-edge-litert`` interpreter class (the ``litert`` extra)."""
    return require("ai_edge_litert.interpreter", "LiteRT export", "'cct-fast[litert]'").Interpreter


def to_tflite(
    model,
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
    batch_size: int | None = 1,
    validation=None,
    max_accuracy_drop: float = quantize.DEFAULT_MAX_DROP,
    seed: int = 0,
) -> str | os.PathLike:
    """Write ``model`` as a ``.tflite`` file, checked in the LiteRT interpreter first.

    Args:
        model: a :class:`cct_fast.CCT` or :class:`cct_fast.TextCCT`, in any implementation.
        path: the ``.tflite`` file to write; a failed export leaves nothing there.
        dtype: ``"float32"``, ``"float16"`` (weights) or ``"int8"`` (needs ``validation``).
        batch_size: the batch the file takes (1, as a phone runs it); None for any (the
            interpreter then resizes its input).
        validation: int8 only: ``(inputs, labels)``; the export is refused when its top-1
            accuracy is more than ``max_accuracy_drop`` below the Keras model's.
        seed: of the random inputs the float checks run.

    Returns:
        ``path``.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}.")
    if (dtype == "int8") != (validation is not None):
        raise ExportError(
            "An int8 LiteRT export needs validation= ((inputs, labels) to check its accuracy), "
            f"and only an int8 export takes it; got dtype={dtype!r}."
        )
    examples.check_max_drop(max_accuracy_drop)
    examples.check_batch_size(batch_size)
    if not str(path).endswith(".tflite"):
        raise ExportError(f"A LiteRT file's name ends in .tflite; got {path}.")
    interpreter = litert_interpreter()
    twin = rebuild(model, implementation="reference", policy="float32")
    with tempfile.TemporaryDirectory(prefix="cct_fast-litert-") as work:
        converter = _converter(twin, batch_size, work)
        if dtype != "float32":
            import tensorflow as tf

            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, by default
        if dtype == "float16":
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
    if dtype == "int8":
        inputs, labels = examples.labelled(twin, validation)
        int8_logits = run_flatbuffer(flatbuffer, interpreter, inputs)
        keras_logits = examples.keras_logits(twin, inputs)
        quantize.check_accuracy(keras_logits, int8_logits, labels, max_accuracy_drop)
    else:
        _verify(flatbuffer, twin, interpreter, batch_size or 2, seed, TOLERANCES[dtype])
    with atomic_output(path, expected_bytes=len(flatbuffer)) as temporary:
        temporary.write_bytes(flatbuffer)
    return path


def _converter(model, batch_size, folder):
    """TensorFlow's converter over a SavedModel of ``model`` whose signature takes the
    export's named inputs, limited to LiteRT's built-in operators."""
    import keras
    import tensorflow as tf

    names = examples.input_names(model)
    if isinstance(model, TextCCT):
        shape = (batch_size, model.config.seq_len)
        specs = [
            tf.TensorSpec(shape, dtype, name=n)
            for n, dtype in zip(names, (tf.int32, tf.bool), strict=True)
        ]

        def serve(token_ids, mask):
            return model((token_ids, mask), training=False)

    else:
        specs = [tf.TensorSpec((batch_size, *model.image_shape), tf.float32, name=names[0])]

        def serve(images):
            return model(images, training=False)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", tf.function(serve, input_signature=specs, autograph=False))
    archive.write_out(folder, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(folder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def run_flatbuffer(flatbuffer, interpreter, inputs):
    """The file's logits for ``inputs`` (input name -> array), in batches of the size it
    was written for (the last one padded to it), or of 64 where its batch is free."""
    loaded = interpreter(model_content=flatbuffer)
    runner = loaded.get_signature_runner()
    fixed = int(loaded.get_input_details()[0]["shape_signature"][0])
    size = fixed if fixed > 0 else 64
    outputs = []
    for chunk in examples.batches(inputs, size):
        rows = len(next(iter(chunk.values())))
        if fixed > 0 and rows < fixed:
            chunk = {
                name: np.resize(array, (fixed, *array.shape[1:])) for name, array in chunk.items()
            }
        (logits,) = runner(**chunk).values()
        outputs.append(logits[:rows])
    return np.concatenate(outputs)


def _verify(flatbuffer, model, interpreter, batch, seed, tolerance):
    inputs = examples.random_inputs(model, batch, np.random.default_rng(seed))
    expected = examples.keras_logits(model, inputs)
    actual = run_flatbuffer(flatbuffer, interpreter, inputs)
    error = relative_error(actual, expected) if actual.shape == expected.shape else np.inf
    if not error <= tolerance:
        raise ExportError(
            f"The LiteRT file does not reproduce {model.name}: the interpreter gives "
            f"{actual.shape} with relative error {error:.2e} (allowed {tolerance})."
        )
