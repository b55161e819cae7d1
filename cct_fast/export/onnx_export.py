"""ONNX export through tf2onnx, verified in ONNX Runtime before it is reported done.

The graph is exported from the ``"reference"`` implementation of the model (same weights): it
is plain TensorFlow, while the fused path holds XLA clusters that tf2onnx cannot convert.
A float16 export is the reference model under Keras' ``mixed_float16`` policy: matmuls and
convolutions in float16, LayerNorm, softmax, pooling and the head in float32, float32 images
in and float32 logits out, as the model computes when trained that way.
"""

from __future__ import annotations

import warnings

import numpy as np

from cct_fast.files import atomic_output

INPUT_NAME = "images"
DEFAULT_OPSET = 17  # LayerNormalization exists from 17; tf2onnx 1.17 knows up to 18.
# Below 13 ONNX Runtime refuses the exported sequence pooling's batched MatMul; the fused graph
# needs LayerNormalization (17).
OPSETS = {False: range(13, 19), True: range(17, 19)}
TOLERANCES = {"float32": 1e-4, "float16": 1e-2}
_POLICIES = {"float32": "float32", "float16": "mixed_float16"}


class ExportError(RuntimeError):
    """An export whose graph did not pass the checks; nothing was written."""


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"ONNX export needs {module}: pip install 'cct-fast[onnx]' (or '[gpu]')."
        ) from None


def _reference_twin(model, policy="float32"):
    """The model in the reference implementation under ``policy``, with the same weights."""
    from cct_fast.model import CCT, dtype_policy

    with dtype_policy(policy):
        twin = CCT.from_config({**model.get_config(), "implementation": "reference",
                                "jit_compile": False, "dtype": policy})
    twin.set_weights(model.get_weights())
    return twin


def to_onnx(model, path, *, opset=None, batch_size=None, dtype="float32", optimize=False,
            seed=0):
    """Export ``model`` to ``path`` and check it; returns the path.

    The input is ``images``: float32 NHWC ``(batch, H, W, C)``, the batch dynamic unless
    ``batch_size`` is given. The output is what the model returns (logits, or features with
    ``include_top=False``), in float32. ``dtype="float16"`` computes in float16 as
    ``mixed_float16`` does (for GPUs). ``optimize=True`` replaces the encoder's layers with
    ONNX Runtime's fused operators (:mod:`cct_fast.onnx_fusion`).

    Before the file is moved into place, the ONNX checker must pass and ONNX Runtime's
    outputs must match the float32 Keras model on random images (relative error <= 1e-4, or
    1e-2 for float16); otherwise :class:`ExportError` is raised and no file is left at
    ``path``.
    """
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(TOLERANCES)}; got {dtype!r}.")
    opset = DEFAULT_OPSET if opset is None else opset
    valid = OPSETS[bool(optimize)]
    if opset not in valid:
        raise ExportError(f"opset {opset} cannot export {'a fused' if optimize else 'the'} graph: "
                          f"choose one from {valid.start} to {valid.stop - 1}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ExportError(f"batch_size must be a positive integer, or None for a dynamic batch; "
                          f"got {batch_size!r}.")
    tf = _require("tensorflow")
    tf2onnx = _require("tf2onnx")
    onnx = _require("onnx")
    twin = _reference_twin(model, _POLICIES[dtype])
    spec = tf.TensorSpec((batch_size,) + twin.image_shape, tf.float32, name=INPUT_NAME)
    function = tf.function(lambda images: tf.cast(twin(images, training=False), tf.float32),
                           autograph=False)
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=(spec,), opset=opset)
    _pad_values_in_float32(proto)
    if optimize:
        proto = _optimized(proto, twin)
    onnx.checker.check_model(proto)
    exact = twin if dtype == "float32" else _reference_twin(model)
    _verify(proto, exact, batch_size or 2, seed, TOLERANCES[dtype])
    serialized = proto.SerializeToString()
    with atomic_output(path, expected_bytes=len(serialized)) as temporary:
        temporary.write_bytes(serialized)
    return path


def _optimized(proto, twin):
    from cct_fast import onnx_fusion

    _require("onnxruntime")
    proto, skipped = onnx_fusion.fuse_encoder(proto, twin)
    if skipped:
        warnings.warn(f"Left unfused (their graph was not one input to one output): "
                      f"{', '.join(skipped)}.", stacklevel=3)
    return onnx_fusion.apply_transformer_fusions(proto, twin)


def _pad_values_in_float32(proto):
    """tf2onnx runs a float16 Pad in float32 (it casts the input) but keeps the pad value in
    float16, which ONNX Runtime refuses; give such a Pad a float32 copy of its value."""
    from onnx import TensorProto, numpy_helper

    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    replaced = set()
    for node in proto.graph.node:
        value = initializers.get(node.input[2]) if node.op_type == "Pad" and len(
            node.input) > 2 else None
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
    ort = _require("onnxruntime")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(seed).standard_normal(
        (batch, *model.config.image_size, model.config.n_input_channels)).astype(np.float32)
    expected = np.asarray(model(images))
    actual = session.run(None, {INPUT_NAME: images})[0]
    error = np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12)
    if actual.shape != expected.shape or not error <= tolerance:
        raise ExportError(
            f"The exported graph does not reproduce {model.name}: ONNX Runtime gives "
            f"{actual.shape} with relative error {error:.2e} (allowed {tolerance})."
        )


class OnnxPredictor:
    """Runs an exported model in ONNX Runtime on the same NHWC batches as the Keras model."""

    def __init__(self, session):
        self.session = session
        spec = session.get_inputs()[0]
        self.input_name, self.input_shape = spec.name, tuple(spec.shape)

    @property
    def providers(self):
        """The execution providers that really run, best first."""
        return self.session.get_providers()

    def predict(self, images):
        images = np.asarray(images)
        if not np.issubdtype(images.dtype, np.floating):
            raise TypeError(
                f"Expected float images; got {images.dtype}. Scale them as in training, "
                "e.g. images.astype('float32') / 255.0."
            )
        expected = self.input_shape
        fixed = [d if isinstance(d, int) else None for d in expected]
        if images.ndim != len(expected) or any(
            f is not None and f != s for f, s in zip(fixed, images.shape)
        ):
            shown = tuple(d if d is not None else "batch" for d in fixed)
            raise ValueError(f"Expected images of shape {shown} (NHWC); got {images.shape}.")
        if len(images) == 0:  # the graph's reshapes refuse no rows: what numpy gives instead
            return self.predict(np.zeros((1,) + images.shape[1:], np.float32))[:0]
        return self.session.run(None, {self.input_name: images.astype(np.float32)})[0]


def load_onnx(path, providers=None) -> OnnxPredictor:
    """Open an exported model on the first of ``providers`` that this onnxruntime offers, as
    ONNX Runtime itself does: listed providers it lacks are skipped with one warning (by
    default ``CUDAExecutionProvider``, of the ``gpu`` extra, then the CPU)."""
    ort = _require("onnxruntime")
    available = ort.get_available_providers()
    if providers is None:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    usable = [p for p in providers if p in available]
    if not usable:
        raise ValueError(f"None of the execution providers {list(providers)} is available; this "
                         f"onnxruntime offers {available}.")
    if len(usable) < len(providers):
        missing = [p for p in providers if p not in available]
        gpu = " (install onnxruntime-gpu with CUDA 12)" if "CUDAExecutionProvider" in missing \
            else ""
        warnings.warn(f"{', '.join(missing)} not available{gpu}; running on {usable[0]}.",
                      stacklevel=2)
    providers = usable
    try:
        session = ort.InferenceSession(str(path), providers=list(providers))
    except Exception as error:  # ORT raises its own exception types
        if type(error).__module__.startswith("onnxruntime"):
            raise ValueError(f"{path} is not a loadable ONNX model: {error}") from None
        raise
    return OnnxPredictor(session)
