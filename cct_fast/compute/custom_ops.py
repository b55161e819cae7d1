"""The optional custom ops of ``kernels/``: multi-head attention over a packed qkv tensor,
sequence pooling, (residual +) LayerNorm and, on the CPU, bias + GELU and the residual adds
that take the branch's bias and drop path, each with its gradient.

CMake builds them into ``cct_fast/libcct_fast_ops.so`` (``CCT_FAST_BUILD_KERNELS=1 pip install
-e .``, or ``cmake -S . -B build && cmake --build build``). This module only loads them;
:mod:`cct_fast.compute.dispatch` decides where they run.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import tensorflow as tf

from cct_fast.errors import ConfigError

LIBRARY = Path(__file__).parents[1] / "libcct_fast_ops.so"
BUILD_HINT = "build it with `CCT_FAST_BUILD_KERNELS=1 pip install -e .` (needs cmake and g++)"
# Names an instruction set narrower than this CPU's widest, for the CPU kernels to run with
# (to test or time on one machine what another CPU gets); read once per process.
ISA_VARIABLE = "CCT_FAST_KERNEL_ISA"
# The instruction sets the CPU kernels are built for, widest first (kernels/cpu/dispatch.cc).
KERNEL_ISAS = ("avx512_bf16", "avx512", "avx2", "baseline")


@functools.cache
def _loaded():
    """(op module, None, None), (None, why not, None), or (None, None, why the requested
    instruction set cannot be had)."""
    if not LIBRARY.exists():
        return None, f"{LIBRARY.name} is not built ({BUILD_HINT})", None
    try:
        module = tf.load_op_library(str(LIBRARY))
    except (tf.errors.NotFoundError, OSError) as error:
        return None, f"{LIBRARY} does not load ({error}); rebuild it against this TensorFlow", None
    isa_error = _library_string("CctKernelIsaError")
    if isa_error is not None:
        return None, None, f"{isa_error}: unset {ISA_VARIABLE}, or name one of those."
    _register_gradients()
    return module, None, None


def _library_string(symbol):
    function = getattr(ctypes.CDLL(str(LIBRARY)), symbol)
    function.restype = ctypes.c_char_p
    value = function()
    return None if value is None else value.decode()


def _checked():
    module, reason, isa_error = _loaded()
    if isa_error is not None:
        raise ConfigError(isa_error)
    return module, reason


def ops():
    """The op module, or None where the library is missing (see :func:`unavailable_reason`).

    Raises:
        ConfigError: ``CCT_FAST_KERNEL_ISA`` names an unknown instruction set, or one this CPU
            cannot run.
    """
    return _checked()[0]


def unavailable_reason():
    return _checked()[1]


@functools.cache
def cpu_isa():
    """The instruction set the CPU kernels run with: avx512_bf16, avx512, avx2 or baseline."""
    if ops() is None:
        return None
    return _library_string("CctKernelIsa")


def has_cuda_kernels():
    return ops() is not None and hasattr(ctypes.CDLL(str(LIBRARY)), "CctKernelHasCuda")


@functools.cache
def _register_gradients():
    """Once per process, even when the library is loaded again: TensorFlow refuses a second
    registration of a name."""

    @tf.RegisterGradient("CctAttention")
    def _attention_gradient(op, grad_output, _grad_logsumexp):
        # logsumexp is an internal output, never differentiated; the seed and mask have no
        # gradient.
        grad_qkv = ops().cct_attention_grad(
            op.inputs[0],
            op.outputs[0],
            op.outputs[1],
            grad_output,
            op.inputs[1],
            op.inputs[2],
            num_heads=op.get_attr("num_heads"),
            scale=op.get_attr("scale"),
            dropout_rate=op.get_attr("dropout_rate"),
        )
        return grad_qkv, None, None

    @tf.RegisterGradient("CctLayerNorm")
    def _layer_norm_gradient(op, grad_y, _grad_mean, _grad_rstd):
        # mean and rstd are saved for the gradient, never differentiated.
        residuals = op.get_attr("N")
        x, gamma = op.inputs[0], op.inputs[1 + residuals]
        grad_x, grad_gamma, grad_beta = ops().cct_layer_norm_grad(
            x,
            list(op.inputs[1 : 1 + residuals]),
            gamma,
            op.outputs[1],
            op.outputs[2],
            grad_y,
            epsilon=op.get_attr("epsilon"),
        )
        return [grad_x] + [grad_x] * residuals + [grad_gamma, grad_beta]

    @tf.RegisterGradient("CctDropPathLayerNorm")
    def _drop_path_layer_norm_gradient(op, grad_y, _grad_mean, _grad_rstd):
        statistics, bias = op.outputs[1:], list(op.inputs[5:])
        grad_x, grad_branch, grad_gamma, grad_beta, grad_bias = ops().cct_drop_path_layer_norm_grad(
            *op.inputs[:4], *statistics, grad_y, bias, epsilon=op.get_attr("epsilon")
        )
        # The drop path's factors are drawn, not learned: no gradient.
        return [grad_x, grad_branch, None, grad_gamma, grad_beta, *grad_bias]

    @tf.RegisterGradient("CctDropPathAdd")
    def _drop_path_add_gradient(op, grad_y):
        scale, with_x, with_bias = op.inputs[1], op.get_attr("N"), op.get_attr("M")
        if with_bias:
            grad_branch, grad_bias = ops().cct_drop_path_add_grad(grad_y, scale)
        else:
            grad_branch, grad_bias = ops().cct_drop_path_add(grad_y, scale, [], []), None
        return [grad_branch, None] + [grad_y] * with_x + [grad_bias] * with_bias

    @tf.RegisterGradient("CctBiasGelu")
    def _bias_gelu_gradient(op, grad_y):
        return ops().cct_bias_gelu_grad(op.inputs[0], op.inputs[1], grad_y)

    @tf.RegisterGradient("CctSequencePool")
    def _pool_gradient(op, grad_output, _grad_weights):
        # The weights output is returned for inspection only; sequence_pool() drops it.
        return ops().cct_sequence_pool_grad(op.inputs[0], op.inputs[1], op.outputs[1], grad_output)


def attention(qkv, num_heads, scale, dropout_rate=0.0, seed=None, mask=None):
    """softmax(scale * q k^T) v per head of ``qkv`` (batch, tokens, 3 * width) packed as
    (3, num_heads, head_dim); returns (batch, tokens, width) with the heads merged.

    ``mask`` (batch, tokens), boolean, true on real tokens: every score that involves a padded
    token counts as the most negative value, as :func:`cct_fast.compute.reference.masked_scores`
    has it, on the CPU and the GPU.

    ``qkv`` float32 or bfloat16 on the CPU; float32 (exact, CUDA cores), bfloat16 or float16
    (tensor cores, sm_80 and newer) on the GPU.

    With ``dropout_rate`` > 0 each probability is dropped with that chance and the rest
    scaled by 1 / (1 - rate), from the Philox key ``seed`` (two int32 words): the same seed
    draws the same mask, forward and backward (``kernels/common/philox.h``,
    :mod:`cct_fast.testing.philox`)."""
    if seed is None:
        if dropout_rate:
            raise ValueError("attention dropout needs a seed: two int32 words.")
        seed = tf.zeros((2,), tf.int32)
    mask = tf.zeros((0,), tf.bool) if mask is None else tf.cast(mask, tf.bool)
    output, _ = ops().cct_attention(
        qkv, seed, mask, num_heads=num_heads, scale=scale, dropout_rate=float(dropout_rate)
    )
    return output


def sequence_pool(tokens, kernel, bias):
    """softmax over tokens of ``tokens @ kernel + bias``, then the weighted sum: (B, N, D) ->
    (B, D), in float32. ``kernel`` is (D,) and ``bias`` a scalar."""
    output, _ = ops().cct_sequence_pool(tokens, kernel, bias)
    return output


def layer_norm(x, gamma, beta, epsilon, residual=None):
    """LayerNorm over the last axis of ``x + residual`` (or of ``x``), statistics in float32,
    returned in ``x``'s dtype (float32 or bfloat16; float16 too on the GPU); ``gamma`` and
    ``beta`` are float32. One pass over each row forward and backward."""
    residuals = [] if residual is None else [residual]
    y, _, _ = ops().cct_layer_norm(x, residuals, gamma, beta, epsilon=epsilon)
    return y


def drop_path_layer_norm(x, branch, scale, gamma, beta, epsilon, bias=None):
    """LayerNorm over the last axis of ``x + scale[sample] * (branch + bias)`` (``x``,
    ``branch`` (batch, ..., width); ``scale`` (batch) float32, drop path's 0 or 1 / keep, or
    ones; ``bias`` (width) float32 or None: the bias the linear layer that made ``branch`` left
    out), as :func:`layer_norm` computes it. CPU only."""
    y, _, _ = ops().cct_drop_path_layer_norm(
        x, branch, scale, gamma, beta, _optional(bias), epsilon=epsilon
    )
    return y


def drop_path_add(x, branch, scale, bias=None):
    """``x + scale[sample] * (branch + bias)`` in one pass, the sum in float32 (arguments as
    :func:`drop_path_layer_norm`'s). CPU only."""
    return ops().cct_drop_path_add(branch, scale, [x], _optional(bias))


def _optional(bias):
    return [] if bias is None else [tf.cast(bias, tf.float32)]


def bias_gelu(x, bias):
    """Exact GELU of ``x + bias`` (``x`` (..., width) float32 or bfloat16, ``bias`` (width)
    float32), computed in float32 and returned in ``x``'s dtype; the gradient is one pass too.
    CPU only."""
    return ops().cct_bias_gelu(x, tf.cast(bias, tf.float32))
