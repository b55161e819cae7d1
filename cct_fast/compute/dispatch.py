"""The one place that decides how a layer computes its steps.

A layer built with ``implementation=`` asks :func:`path` once per call and runs the steps of
the :class:`Path` it gets: the Keras layers themselves (``"reference"``), the fused functions
of :mod:`cct_fast.compute.fused` on the layers' variables (``"fused"``), or those with
attention, sequence pooling and LayerNorm in the custom ops of
:mod:`cct_fast.compute.custom_ops` (``"custom"`` where they can run; ``"auto"`` where they
were measured faster). All hold the
same weights.

``"custom"`` runs the fused path instead, saying why once, where the custom ops cannot run:

- the library is not built or does not load;
- the model runs on a GPU and the library has no CUDA kernels;
- the call is compiled by XLA (``jit_compile=True``): XLA cannot compile custom ops;
- the inputs have a dtype without a kernel on this device (:data:`KERNEL_DTYPES`).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable

import keras
import tensorflow as tf

from cct_fast.compute import IMPLEMENTATIONS, custom_ops, fused, reference
from cct_fast.compute.xla import in_xla_context
from cct_fast.errors import ConfigError

# Where "auto" takes the custom ops: (CPU instruction set of the kernels, compute dtype,
# training step or inference) where they ran a whole CCT-7/3x1 at least 1.3x the fused path
# in the benchmark's interleaved rounds (median), on the 2-core AVX512_BF16 CPU: the bfloat16
# training step (1.74x, `pytest benchmarks/test_speed.py --benchmark-only -k test_train_step`,
# 2026-12-03; 1.86x and 1.80x in the complete runs after the drop path ops and after the
# biases went into the residual ops) and, since the bias + GELU op, the float32 one (1.31x,
# rounds 1.24-1.47x; 1.29x and 1.41x, rounds 1.22-1.64x and 1.40-1.48x, in those runs). The
# float32 kernels are the same code on AVX-512 without BF16, where `benchmarks/kernel_isas.py`
# read the float32 step 1.34-1.42x the fused path (1.37x and 1.41x in its last two runs;
# README, "What each CPU gets"). Inference (1.04-1.31x) and AVX2 (level) stay fused, and
# nothing was measured on a GPU: fused there. The text models' training steps took the same
# keys and ran 1.19x (float32) and 1.10x (bfloat16) the fused path (README, "Custom kernels"):
# not slower, so the keys stand for them too.
AUTO_PREFERS_CUSTOM = frozenset(
    {
        ("avx512_bf16", "bfloat16", "training"),
        ("avx512_bf16", "float32", "training"),
        ("avx512", "float32", "training"),
    }
)
# The GPU's bfloat16 and float16 attention runs on tensor cores (sm_80 and newer).
KERNEL_DTYPES = {"CPU": ("float32", "bfloat16"), "GPU": ("float32", "bfloat16", "float16")}


def check_implementation(implementation):
    """``implementation``, if it is one of :data:`IMPLEMENTATIONS`."""
    if implementation not in IMPLEMENTATIONS:
        raise ConfigError(
            f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}."
        )
    return implementation


@dataclasses.dataclass(frozen=True)
class Path:
    """The steps of one implementation. Each takes the Keras layer whose weights it uses."""

    name: str
    layer_norm: Callable  # (norm, x)
    # (layer, x, dropout, training): dropout(dense(layer, x)), the branch of a residual add, as
    # (tokens, bias): the bias left for the residual step to add, or None (added already).
    residual_dense: Callable
    # (norm, x, branch, drop_path, training, bias=None): norm(x + drop_path(branch + bias)),
    # drop_path the layer's DropPath, bias what residual_dense left.
    residual_layer_norm: Callable
    # (x, branch, drop_path, training, bias=None): x + drop_path(branch + bias)
    residual_add: Callable
    dense: Callable  # (layer, x, activation=None): tokens (..., in) -> (..., out)
    # (qkv, num_heads, scale, dropout=None, mask=None): (B, N, 3D) -> (B, N, D); dropout is the
    # layer's active Dropout (cct_fast.core.layers.replica_dropout), or None.
    attention: Callable
    sequence_pool: Callable  # (layer, tokens): (B, N, D) -> (B, D)


def _on_rows(layer, x, function):
    """``function`` of x's tokens as rows, (n, in) -> (n, layer.units), with x's leading axes
    back."""
    y = function(tf.reshape(x, (-1, x.shape[-1])))
    return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [layer.units]], 0))


def _fused_dense(layer, x, activation=None, bias_gelu=fused.bias_gelu):
    if activation == "gelu":
        return _on_rows(
            layer, x, lambda rows: bias_gelu(fused.linear(rows, layer.kernel), layer.bias)
        )
    bias = layer.bias if layer.use_bias else None
    return _on_rows(layer, x, lambda rows: fused.linear(rows, layer.kernel, bias))


def _custom_dense(layer, x, activation=None):
    """The fused path's dense, with the MLP's bias + exact GELU as one custom op on the CPU
    (the GPU has no kernel for it: XLA's fusion runs there)."""
    on_cpu = _device_type() == "CPU"
    bias_gelu = custom_ops.bias_gelu if on_cpu else fused.bias_gelu
    return _fused_dense(layer, x, activation, bias_gelu)


def _custom_attention(qkv, num_heads, scale, dropout=None, mask=None):
    if dropout is None:
        return custom_ops.attention(qkv, num_heads, scale, mask=mask)
    # The op's Philox key, drawn from the Dropout layer's own seed generator: a run that
    # re-seeds its layers (cct_fast.train) draws the same masks again.
    seed = keras.random.randint((2,), 0, 2**31 - 1, seed=dropout.seed_generator, dtype="int32")
    return custom_ops.attention(
        qkv, num_heads, scale, dropout_rate=dropout.rate, seed=seed, mask=mask
    )


def _custom_sequence_pool(layer, tokens):
    return custom_ops.sequence_pool(tf.cast(tokens, tf.float32), layer.kernel[:, 0], layer.bias[0])


def _dropped_branch(branch, drop_path, training, bias):
    """drop_path(branch + bias), with the DropPath layer's own call."""
    return drop_path(branch if bias is None else branch + bias, training=training)


def _after_drop_path(residual_layer_norm):
    """A (norm, x, branch) residual LayerNorm as a Path's step: the DropPath layer's own call
    on the branch first."""
    return lambda norm, x, branch, drop_path, training, bias=None: residual_layer_norm(
        norm, x, _dropped_branch(branch, drop_path, training, bias)
    )


def _add_after_drop_path(x, branch, drop_path, training, bias=None):
    return x + _dropped_branch(branch, drop_path, training, bias)


def _biased_branch(dense):
    """A Path's residual_dense over its ``dense``: the bias added there, then the dropout."""
    return lambda layer, x, dropout, training: (dropout(dense(layer, x), training=training), None)


REFERENCE = Path(
    "reference",
    reference.layer_norm,
    _biased_branch(reference.dense),
    _after_drop_path(reference.residual_layer_norm),
    _add_after_drop_path,
    reference.dense,
    reference.attention,
    reference.sequence_pool,
)
FUSED = Path(
    "fused",
    lambda norm, x: fused.layer_norm(x, norm.gamma, norm.beta),
    _biased_branch(_fused_dense),
    _after_drop_path(
        lambda norm, x, branch: fused.residual_layer_norm(x, branch, norm.gamma, norm.beta)
    ),
    _add_after_drop_path,
    _fused_dense,
    fused.attention,
    lambda layer, tokens: fused.sequence_pool(tokens, layer.kernel, layer.bias),
)


def _norm_weights(norm):
    return [tf.convert_to_tensor(w, tf.float32) for w in (norm.gamma, norm.beta)]


def _custom_layer_norm(norm, x, residual=None):
    gamma, beta = _norm_weights(norm)
    return custom_ops.layer_norm(x, gamma, beta, norm.epsilon, residual=residual)


def _custom_residual_dense(layer, x, dropout, training):
    """On the CPU with no dropout active after the layer, the GEMM alone: the bias goes into
    the residual op's pass, where TensorFlow's fused bias and its gradient (BiasAddGrad) each
    took one more pass over the tokens."""
    if _device_type() != "CPU" or (training and dropout.rate > 0):
        return _biased_branch(_fused_dense)(layer, x, dropout, training)
    return _on_rows(layer, x, lambda rows: fused.linear(rows, layer.kernel)), layer.bias


def _residual_ops_take(drop_path, training, bias):
    """Whether a residual add runs as one of the CPU's residual ops: where it has the branch's
    bias to add (only the CPU leaves it), or a drop path to draw on the CPU."""
    return bias is not None or (drop_path.active(training) and _device_type() == "CPU")


def _sample_scale(drop_path, training, x):
    """The residual ops' factor per sample: the drop path's draw, or ones where it is idle."""
    batch = tf.shape(x)[0]
    return drop_path.sample_scale(batch) if drop_path.active(training) else tf.ones((batch,))


def _custom_residual_layer_norm(norm, x, branch, drop_path, training, bias=None):
    """norm(x + drop_path(branch + bias)); on the CPU one op adds the bias and scales the branch
    per sample inside the sum, where the bias and the DropPath layer's broadcast multiply took
    a pass each."""
    if not _residual_ops_take(drop_path, training, bias):
        return _custom_layer_norm(norm, x, _dropped_branch(branch, drop_path, training, bias))
    scale = _sample_scale(drop_path, training, x)
    weights = _norm_weights(norm)
    return custom_ops.drop_path_layer_norm(x, branch, scale, *weights, norm.epsilon, bias)


def _custom_residual_add(x, branch, drop_path, training, bias=None):
    """x + drop_path(branch + bias), as one op on the CPU."""
    if not _residual_ops_take(drop_path, training, bias):
        return _add_after_drop_path(x, branch, drop_path, training, bias)
    return custom_ops.drop_path_add(x, branch, _sample_scale(drop_path, training, x), bias)


# The custom path also runs LayerNorm, and residual + LayerNorm, as one op: forward and
# backward one pass over each row. On the CPU that is 2.3-3.4x faster than the fused path's XLA
# cluster or plain graph ops, which are level with each other once the backward counts (profile
# block of benchmarks/RESULTS.md: 6.2-7.0 ms against 15.7-21.2 ms for one CCT-7 layer at batch
# 64). So does the MLP's bias + exact GELU on the CPU (profile-cct_14_7x2_224 block). In
# training on the CPU the drop path's factor goes inside the residual adds' ops, where the
# DropPath layer's broadcast multiply and the add took a pass each: the bfloat16 CCT-7/3x1 step
# at batch 64 ran 811-855 ms against 855-964 ms (interleaved, avx512_bf16); float32 is level.
# Where no dropout follows proj and linear2 (the official models' default), those ops also add
# their biases, in training and inference: TensorFlow's bias in the GEMM and its BiasAddGrad
# were a pass over the tokens each. bfloat16 CCT-7/3x1 at batch 64, interleaved on avx512_bf16:
# the step 900-961 against 951-1007 ms, inference 260-270 against 268-283 ms; CCT-14/7x2 at
# batch 8 137-142 against 141-144 ms; float32 within the noise. The bfloat16 bias gradients are
# also summed in float32 (tests/test_drop_path_ops.py).
CUSTOM = dataclasses.replace(
    FUSED,
    name="custom",
    dense=_custom_dense,
    layer_norm=_custom_layer_norm,
    residual_dense=_custom_residual_dense,
    residual_layer_norm=_custom_residual_layer_norm,
    residual_add=_custom_residual_add,
    attention=_custom_attention,
    sequence_pool=_custom_sequence_pool,
)


def path(implementation, dtype="float32", training=False) -> Path:
    """The steps a layer built with ``implementation`` runs in this call, on inputs of
    ``dtype``, in a training step or not."""
    if implementation == "reference":
        return REFERENCE
    if implementation in ("custom", "auto") and runs_custom(implementation, dtype, training):
        return CUSTOM
    return FUSED


def _device_type():
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def auto_prefers_custom(dtype, training):
    """Whether ``"auto"`` takes the custom ops for this call (:data:`AUTO_PREFERS_CUSTOM`)."""
    if _device_type() != "CPU" or custom_ops.ops() is None:
        return False
    case = (custom_ops.cpu_isa(), tf.as_dtype(dtype).name, "training" if training else "inference")
    return case in AUTO_PREFERS_CUSTOM


def runs_custom(implementation, dtype="float32", training=False):
    """Whether ``implementation`` runs the custom ops in this call; ``"custom"`` says once
    why not where it cannot."""
    if implementation == "auto" and not auto_prefers_custom(dtype, training):
        return False
    device = _device_type()
    dtypes = KERNEL_DTYPES[device]
    dtype = tf.as_dtype(dtype).name
    reason = None
    if custom_ops.ops() is None:
        reason = custom_ops.unavailable_reason()
    elif device == "GPU" and not custom_ops.has_cuda_kernels():
        reason = "the library was built without CUDA kernels and the model runs on a GPU"
    elif dtype not in dtypes:
        reason = f"the {device} kernels take {' or '.join(dtypes)}, not {dtype}"
    elif in_xla_context():
        reason = "XLA (jit_compile=True) cannot compile custom ops"
    if reason is not None and implementation == "custom":
        _explain_once(reason)
    return reason is None


@functools.cache
def _explain_once(reason):
    warnings.warn(
        f"cct_fast: the custom ops are not used: {reason}; running the fused path instead.",
        RuntimeWarning,
        stacklevel=4,
    )
