"""The math of the fused implementation: each step of a CCT layer in the form that runs
fastest on TensorFlow's CPU backend (``benchmarks/RESULTS.md`` holds the measurements).

- LayerNorm and residual + LayerNorm are XLA clusters: one pass forward instead of the several
  kernels of ``tf.nn.moments`` (with the backward, the two are level; the custom path's CPU op
  is 2.3-3.4x faster than either: ``benchmarks/profile_layer.py``).
- Linear layers are 2-D ``matmul`` + ``bias_add``, which Grappler's remapper fuses into one
  oneDNN call (Keras' Dense on 3-D inputs does not match that pattern). Bias + exact GELU is
  an XLA cluster, faster than TensorFlow's erf-based GELU and with a one-pass gradient.
- The attention matmuls and the softmax stay on oneDNN: XLA's CPU backend does not use
  oneDNN's batched or bfloat16 GEMMs, and runs them slower.
- Sequence pooling is one XLA cluster in float32.

Under ``compile(jit_compile=True)`` the whole step is one XLA cluster and these functions are
inlined into it. Statistics (LayerNorm, softmax, pooling) are computed in float32 whatever the
compute dtype.
"""

import functools

import tensorflow as tf

from cct_fast.compute import reference
from cct_fast.compute.xla import compiled

LAYER_NORM_EPSILON = 1e-5  # PyTorch's default; Keras' is 1e-3.


def _layer_norm_float32(x, gamma, beta):
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPSILON) * gamma + beta


@compiled
def layer_norm(x, gamma, beta):
    """LayerNorm over the last axis in float32, returned in ``x``'s dtype."""
    return tf.cast(_layer_norm_float32(tf.cast(x, tf.float32), gamma, beta), x.dtype)


@compiled
def residual_layer_norm(x, branch, gamma, beta):
    """``layer_norm(x + branch)``: the official ``norm1`` that replaces the residual stream."""
    total = tf.cast(x, tf.float32) + tf.cast(branch, tf.float32)
    return tf.cast(_layer_norm_float32(total, gamma, beta), x.dtype)


def linear(x, kernel, bias=None):
    """``x @ kernel + bias`` on 2-D ``x``, in the form Grappler fuses into one oneDNN call."""
    y = tf.matmul(x, tf.cast(kernel, x.dtype))
    if bias is not None:
        y = tf.nn.bias_add(y, tf.cast(bias, x.dtype))
    return y


@compiled
def bias_gelu(x, bias):
    """Exact GELU of ``x + bias`` in float32. As fast as Grappler's matmul+bias+GELU fusion
    forward, and its gradient is one fused pass instead of the many of erf's autodiff."""
    y = tf.cast(x, tf.float32) + tf.cast(bias, tf.float32)
    return tf.cast(0.5 * y * (1.0 + tf.math.erf(y * 0.7071067811865476)), x.dtype)


def attention(qkv, num_heads, scale, dropout=None, mask=None):
    """Multi-head attention of a packed (batch, tokens, 3 * width) qkv tensor, heads merged
    back to (batch, tokens, width); ``dropout`` (a Keras ``Dropout`` layer, or None)
    applies to the probabilities,
    ``mask`` (batch, tokens) as in :func:`cct_fast.compute.reference.masked_scores`."""
    q, k, v = split_heads(qkv, num_heads, scale)
    weights = attention_weights(q, k, mask)
    if dropout is not None:
        weights = dropout(weights, training=True)
    return merge_heads(tf.matmul(weights, v), tf.shape(qkv)[1])


def attention_weights(q, k, mask=None):
    """softmax(q k^T) over the keys in float32, returned in ``q``'s dtype; q is pre-scaled.

    bfloat16 scores go to TensorFlow's bfloat16 softmax directly where that is the float32
    softmax rounded once (:func:`bfloat16_softmax_is_exact`), which is 2.4x faster than
    casting to float32 and back; elsewhere they are cast.
    """
    scores = tf.matmul(q, k, transpose_b=True)
    if scores.dtype != tf.bfloat16 or not bfloat16_softmax_is_exact():
        scores = tf.cast(scores, tf.float32)
    if mask is not None:
        scores = reference.masked_scores(scores, mask)
    return tf.cast(tf.nn.softmax(scores), q.dtype)


@functools.cache
def bfloat16_softmax_is_exact():
    """Whether ``tf.nn.softmax`` on bfloat16 gives the float32 softmax rounded once, asked of
    the kernel that runs here, once per process.

    oneDNN's kernel accumulates in float32 and rounds once; it runs on CPUs with AVX-512
    (measured: with and without AVX512_BF16). On AVX2-only CPUs, or with
    ``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's own kernel runs instead and computes in bfloat16,
    whose step is 0.25 at scores of 32-64: probabilities off by up to 29 %. The probe's scores
    reach 60, where the two differ.
    """
    with tf.init_scope():  # eager, even while a tf.function is being traced
        scores = tf.reshape(tf.linspace(-60.0, 60.0, 64), (2, 32))
        direct = tf.nn.softmax(tf.cast(scores, tf.bfloat16))
        rounded = tf.cast(
            tf.nn.softmax(tf.cast(tf.cast(scores, tf.bfloat16), tf.float32)), tf.bfloat16
        )
        return bool(tf.reduce_all(direct == rounded))


def split_heads(qkv, num_heads, scale):
    """(batch, tokens, 3 * dim) -> q * scale, k, v, each (batch, heads, tokens, head_dim)."""
    head_dim = qkv.shape[-1] // (3 * num_heads)
    qkv = tf.reshape(qkv, (-1, tf.shape(qkv)[1], 3, num_heads, head_dim))
    q, k, v = tf.unstack(tf.transpose(qkv, (2, 0, 3, 1, 4)))
    return q * tf.cast(scale, qkv.dtype), k, v


def merge_heads(x, tokens):
    """(batch, heads, tokens, head_dim) -> (batch, tokens, heads * head_dim)."""
    heads, head_dim = x.shape[1], x.shape[3]
    return tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (-1, tokens, heads * head_dim))


@compiled
def sequence_pool(tokens, kernel, bias):
    """softmax over tokens of ``tokens @ kernel + bias``, then the weighted sum, in float32."""
    tokens = tf.cast(tokens, tf.float32)
    scores = tf.einsum("bnd,do->bno", tokens, kernel) + bias
    weights = tf.nn.softmax(scores, axis=1)
    return tf.einsum("bno,bnd->bd", weights, tokens)
