"""ONNX export through tf2onnx, verified in ONNX Runtime before it is reported done.

The graph is exported from the ``"reference"`` implementation of the model (same weights): it
is plain TensorFlow, while the fused path holds XLA clusters that tf2onnx cannot convert.
A float16 export is the reference model under Keras' ``mixed_float16`` policy: matmuls and
convolutions in float16, LayerNorm, softmax, pooling and the head in float32, float32 images
in and float32 logits out, as the model computes when trained that way.

A text model exports as ``(token_ids, mask) -> logits``: int32 ids and a boolean mask, each
(batch, seq_len), from the run's :class:`~cct_fast.data.text_encoder.TextEncoder`. Given that
encoder, it exports as ``texts -> (logits, probabilities)`` instead: tensorflow-text's ops have
no ONNX converter, so :mod:`.text_graph` rebuilds the tokenizer from onnxruntime-extensions'
operators, checked id for id against the encoder.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from cct_fast.base.compare import relative_error
from cct_fast.base.files import atomic_output
from cct_fast.core.model import CCT, rebuild
from cct_fast.core.text_model import TextCCT
from cct_fast.errors import ConfigError, ExportError
from cct_fast.export import examples, fusion, quantize, text_graph
from cct_fast.export.examples import INPUT_NAME, TEXT_INPUTS
from cct_fast.export.predictor import INT8_CHECK_KEY, VOCAB_SIZE_KEY, onnx_package

DEFAULT_OPSET = 17  # LayerNormalization exists from 17; tf2onnx 1.17 knows up to 18.
# Below 13 ONNX Runtime refuses the exported sequence pooling's batched MatMul; the fused graph
# needs LayerNormalization (17).
OPSETS = {False: range(13, 19), True: range(17, 19)}
TOLERANCES = {"float32": 1e-4, "float16": 1e-2}
# The raw-text graph runs the token-id graph's nodes on the same ids.
TEXT_GRAPH_TOLERANCE = 1e-5
DTYPES = (*TOLERANCES, "int8")
# int8 is quantized from the float32 graph, which is checked against Keras first.
_POLICIES = {"float32": "float32", "float16": "mixed_float16", "int8": "float32"}


def to_onnx(
    model: CCT,
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    batch_size: int | None = None,
    dtype: str = "float32",
    optimize: bool = False,
    seed: int = 0,
    calibration=None,
    validation=None,
    max_accuracy_drop: float = quantize.DEFAULT_MAX_DROP,
    encoder=None,
) -> str | os.PathLike:
    """Export ``model`` to an ONNX file, checked in ONNX Runtime before it is written.

    The graph's input is ``images``, float32 NHWC ``(batch, H, W, C)``; a text model's are
    ``token_ids`` (int32) and ``mask`` (bool), each ``(batch, seq_len)``, or with ``encoder``
    raw strings. The output is what the model returns (logits, or features with
    ``include_top=False``), in float32. Before the
    file is moved into place, the ONNX checker must pass and ONNX Runtime's outputs must match
    the float32 Keras model on random images (relative error <= 1e-4, or 1e-2 for float16);
    otherwise :class:`~cct_fast.errors.ExportError` is raised and no file is left at ``path``.

    Args:
        model: a :class:`cct_fast.CCT` or :class:`cct_fast.TextCCT`, in any implementation.
        path: the ``.onnx`` file to write.
        opset: ONNX opset, 13 to 18 (17 to 18 with ``optimize``); default 17.
        batch_size: a fixed batch size; None keeps it dynamic.
        dtype: ``"float32"``; ``"float16"`` to compute as ``mixed_float16`` does (GPUs); or
            ``"int8"``, static quantization of the float32 graph
            (:mod:`cct_fast.export.quantize`), which needs ``calibration`` and ``validation``.
        optimize: replace each encoder layer with ONNX Runtime's fused operators
            (:mod:`cct_fast.export.fusion`); image models only.
        seed: of the random images the check runs.
        calibration: int8 only: a few hundred of the model's inputs (training images as the
            model takes them, or a text model's ``(token_ids, mask)``), on which the
            activations' ranges are measured.
        validation: int8 only: ``(inputs, labels)``, labelled examples the model did not
            train on. The int8 graph's top-1 accuracy on them may be at most
            ``max_accuracy_drop`` below the Keras model's, or the export is refused; both
            accuracies are kept in the file's metadata (``cct_fast.int8``, read back as
            :attr:`OnnxPredictor.int8_check <cct_fast.export.OnnxPredictor.int8_check>`).
        max_accuracy_drop: int8 only, as a fraction (0.01: one point).
        encoder: a text model's :class:`~cct_fast.data.text_encoder.TextEncoder` (its run's
            ``encoder.json``): the graph then takes raw text, input ``texts``, a batch of
            strings, tokenized inside it by onnxruntime-extensions' operators
            (:mod:`cct_fast.export.text_graph`), and returns ``logits`` and
            ``probabilities``. Running it needs onnxruntime-extensions (``load_onnx`` registers
            it). Its ids are checked to equal the encoder's on texts of the vocabulary, and its
            logits the token-id graph's.

    Returns:
        ``path``.
    """
    text = isinstance(model, TextCCT)
    if text and optimize:
        raise ExportError(
            f"{model.name} is a text model: the fused graph (optimize) rewrites the image "
            "models' unmasked attention only. Export it without optimize."
        )
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}.")
    examples.check_int8_arguments(dtype, calibration, validation, max_accuracy_drop)
    examples.check_encoder(model, encoder)
    if encoder is not None:
        text_graph.library_path()  # before the export's minutes: a missing extra, said
    opset = DEFAULT_OPSET if opset is None else opset
    valid = OPSETS[bool(optimize)]
    if opset not in valid:
        raise ExportError(
            f"opset {opset} cannot export {'a fused' if optimize else 'the'} graph: "
            f"choose one from {valid.start} to {valid.stop - 1}."
        )
    examples.check_batch_size(batch_size)
    import tensorflow as tf

    tf2onnx = onnx_package("tf2onnx")
    onnx = onnx_package("onnx")
    twin = rebuild(model, implementation="reference", policy=_POLICIES[dtype])
    if text:
        shape = (batch_size, twin.config.seq_len)
        signature = (
            tf.TensorSpec(shape, tf.int32, name=TEXT_INPUTS[0]),
            tf.TensorSpec(shape, tf.bool, name=TEXT_INPUTS[1]),
        )
        function = tf.function(
            lambda ids, mask: tf.cast(twin((ids, mask), training=False), tf.float32),
            autograph=False,
        )
    else:
        signature = (tf.TensorSpec((batch_size,) + twin.image_shape, tf.float32, name=INPUT_NAME),)
        function = tf.function(
            lambda images: tf.cast(twin(images, training=False), tf.float32), autograph=False
        )
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    _pad_values_in_float32(proto)
    if optimize:
        proto = _optimized(proto, twin, quantizable=dtype == "int8")
    properties = {VOCAB_SIZE_KEY: str(twin.config.vocab_size)} if text else {}
    onnx.checker.check_model(proto)
    exact = twin if dtype != "float16" else rebuild(model, policy="float32")
    _verify(proto, exact, batch_size or 2, seed, TOLERANCES.get(dtype, TOLERANCES["float32"]))
    if dtype == "int8":
        proto, check = _int8(proto, exact, calibration, validation, max_accuracy_drop)
        properties[INT8_CHECK_KEY] = check.to_json()
    if encoder is not None:
        proto = _with_tokenizer(proto, encoder, seed)
    onnx.helper.set_model_props(proto, properties)
    serialized = proto.SerializeToString()
    with atomic_output(path, expected_bytes=len(serialized)) as temporary:
        temporary.write_bytes(serialized)
    return path


def _int8(proto, model, calibration, validation, max_drop):
    """The float32 ``proto`` quantized, and the check of its accuracy."""
    ort = onnx_package("onnxruntime")
    calibration = examples.feeds(model, calibration, "calibration")
    inputs, labels = examples.labelled(model, validation)
    quantized = quantize.quantize_static(proto, calibration)
    session = ort.InferenceSession(
        quantized.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    int8_logits = np.concatenate([session.run(None, b)[0] for b in examples.batches(inputs, 64)])
    check = quantize.check_accuracy(
        examples.keras_logits(model, inputs), int8_logits, labels, max_drop
    )
    return quantized, check


def _with_tokenizer(proto, encoder, seed):
    """``proto`` with ``encoder``'s tokenizer before it, once the tokenizer's ids equal the
    encoder's and the whole graph's logits those of ``proto`` on the encoder's ids."""
    texts = text_graph.check_texts(encoder, 32, np.random.default_rng(seed))
    strings = {text_graph.TEXTS_INPUT: np.array(texts, dtype=object)}
    expected = [np.asarray(value) for value in encoder(texts)]
    tokens = text_graph.session(text_graph.tokenizer_model(encoder)).run(None, strings)
    differ = [
        i
        for i in range(len(texts))
        if any((a[i] != b[i]).any() for a, b in zip(tokens, expected, strict=True))
    ]
    if differ:
        raise ExportError(
            f"The ONNX tokenizer splits {len(differ)} of {len(texts)} check texts unlike the "
            f"run's encoder, such as {texts[differ[0]]!r:.200}: nothing was written."
        )
    composed = text_graph.with_tokenizer(proto, encoder)
    plain = onnx_package("onnxruntime").InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    wanted = plain.run(None, dict(zip(TEXT_INPUTS, expected, strict=True)))[0]
    logits = text_graph.session(composed).run(None, strings)[0]
    error = relative_error(logits, wanted) if logits.shape == wanted.shape else np.inf
    if not error <= TEXT_GRAPH_TOLERANCE:
        raise ExportError(
            f"The raw-text graph's logits differ from the token-id graph's by {error:.2e} "
            f"(relative; at most {TEXT_GRAPH_TOLERANCE:.0e}): nothing was written."
        )
    return composed


def _optimized(proto, twin, quantizable=False):
    onnx_package("onnxruntime")
    proto, skipped = fusion.fuse_encoder(proto, twin, quantizable=quantizable)
    if skipped:
        warnings.warn(
            f"Left unfused (their graph was not one input to one output): {', '.join(skipped)}.",
            stacklevel=3,
        )
    return fusion.apply_transformer_fusions(proto, twin)


def _pad_values_in_float32(proto):
    """tf2onnx runs a float16 Pad in float32 (it casts the input) but keeps the pad value in
    float16, which ONNX Runtime refuses; give such a Pad a float32 copy of its value."""
    from onnx import TensorProto, numpy_helper

    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    replaced = set()
    for node in proto.graph.node:
        value = (
            initializers.get(node.input[2])
            if node.op_type == "Pad" and len(node.input) > 2
            else None
        )
        if value is None or value.data_type != TensorProto.FLOAT16:
            continue
        name = f"{value.name}/float32"
        if name not in initializers:
            copy = numpy_helper.from_array(numpy_helper.to_array(value).astype(np.float32), name)
            proto.graph.initializer.append(copy)
            initializers[name] = copy
        node.input[2] = name
        replaced.add(value.name)
    still_used = {name for node in proto.graph.node for name in node.input}
    for tensor in [initializers[name] for name in replaced - still_used]:
        proto.graph.initializer.remove(tensor)


def _verify(proto, model, batch, seed, tolerance):
    ort = onnx_package("onnxruntime")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = examples.random_inputs(model, batch, np.random.default_rng(seed))
    expected = examples.keras_logits(model, inputs)
    actual = session.run(None, inputs)[0]
    error = relative_error(actual, expected) if actual.shape == expected.shape else np.inf
    if not error <= tolerance:
        raise ExportError(
            f"The exported graph does not reproduce {model.name}: ONNX Runtime gives "
            f"{actual.shape} with relative error {error:.2e} (allowed {tolerance})."
        )
