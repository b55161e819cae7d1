"""The fused fast path: what each step of a CCT forward pass runs as on TensorFlow.

Measured on the 2-core AVX-512 development machine (CCT-7/3x1 shapes, batch 64, one layer):

- LayerNorm and residual + LayerNorm are XLA clusters (``tf.function(jit_compile=True)``):
  one pass instead of the several kernels of ``tf.nn.moments``; 1.7x faster.
- Linear layers are 2-D ``matmul`` + ``bias_add`` that Grappler's remapper fuses into one
  oneDNN call (Keras' Dense on 3-D inputs does not match that pattern). Bias + exact GELU is
  an XLA cluster: 2 ms instead of 7 ms (fp32) or 9 ms (bf16) for TensorFlow's erf-based GELU,
  and a one-pass gradient.
- The attention matmuls and the softmax stay on oneDNN: XLA's CPU backend runs them
  1.6x (fp32) to 5x (bf16) slower, because it does not use oneDNN's batched or bf16 GEMMs.
- Sequence pooling is one XLA cluster in float32.

Under ``compile(jit_compile=True)`` the whole step is one XLA cluster and these functions are
inlined into it. Statistics (LayerNorm, softmax, pooling) are computed in float32 whatever the
compute dtype.
"""

import functools

import tensorflow as tf

try:  # No public API tells whether a graph is being compiled by XLA.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
except ImportError:  # pragma: no cover - a TensorFlow without it

    def GraphOrParentsInXlaContext(graph):
        return False


LAYER_NORM_EPSILON = 1e-5
IMPLEMENTATIONS = ("fused", "reference", "custom", "auto")


def check_implementation(implementation):
    """The layers and the model run this module (``"fused"``), one Keras op per step
    (``"reference"``), or this module with the attention and pooling of the custom ops where
    they can run (``"custom"``; ``"auto"`` where they are measured faster; see
    :mod:`cct_fast.kernels`)."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}."
        )
    return implementation


def in_xla_context():
    """Whether the graph being traced is compiled by XLA (``jit_compile=True``)."""
    return GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _xla(function):
    """``tf.function(jit_compile=True)`` that takes Keras variables as well as tensors (a Keras
    variable is not a ``tf.Variable``, and tf.function would trace it as a Python object).

    Inside a graph that XLA already compiles (``compile(jit_compile=True)``) the function is
    inlined instead: a nested XLA function there is compiled again at every gradient step
    (28 s a step for CCT-2 instead of milliseconds).
    """
    compiled = tf.function(function, jit_compile=True)

    @functools.wraps(function)
    def call(*args):
        if in_xla_context():
            return function(*args)
        return compiled(*(tf.convert_to_tensor(arg) for arg in args))

    return call


def _layer_norm_float32(x, gamma, beta):
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPSILON) * gamma + beta


@_xla
def layer_norm(x, gamma, beta):
    """LayerNorm over the last axis in float32, returned in ``x``'s dtype."""
    return tf.cast(_layer_norm_float32(tf.cast(x, tf.float32), gamma, beta), x.dtype)


@_xla
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


@_xla
def bias_gelu(x, bias):
    """Exact GELU of ``x + bias`` in float32. As fast as Grappler's matmul+bias+GELU fusion
    forward, and its gradient is one fused pass instead of the many of erf's autodiff."""
    y = tf.cast(x, tf.float32) + tf.cast(bias, tf.float32)
    return tf.cast(0.5 * y * (1.0 + tf.math.erf(y * 0.7071067811865476)), x.dtype)


def attention(qkv, tokens, num_heads, scale, dropout=None):
    """Multi-head attention of a packed (batch * tokens, 3 * width) qkv tensor, heads merged
    back to (batch * tokens, width); ``dropout`` (a function) applies to the probabilities."""
    q, k, v = split_heads(qkv, tokens, num_heads, scale)
    weights = attention_weights(q, k)
    if dropout is not None:
        weights = dropout(weights)
    return merge_heads(tf.matmul(weights, v))


def attention_weights(q, k):
    """softmax(q k^T) over the keys in float32, returned in ``q``'s dtype; q is pre-scaled.

    oneDNN's bfloat16 softmax accumulates in float32 and rounds once, which gives the same
    bits as casting to float32 and back (tested) at 2.4x the speed, so bfloat16 scores go to
    it directly.
    """
    scores = tf.matmul(q, k, transpose_b=True)
    if scores.dtype == tf.bfloat16:
        return tf.nn.softmax(scores)
    return tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32)), q.dtype)


def split_heads(qkv, tokens, num_heads, scale):
    """(batch * tokens, 3 * dim) -> q * scale, k, v, each (batch, heads, tokens, head_dim)."""
    head_dim = qkv.shape[-1] // (3 * num_heads)
    qkv = tf.transpose(tf.reshape(qkv, (-1, tokens, 3, num_heads, head_dim)), (2, 0, 3, 1, 4))
    q, k, v = tf.unstack(qkv)
    return q * tf.cast(scale, qkv.dtype), k, v


def merge_heads(x):
    """(batch, heads, tokens, head_dim) -> (batch * tokens, heads * head_dim)."""
    heads, head_dim = x.shape[1], x.shape[3]
    return tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (-1, heads * head_dim))


@_xla
def sequence_pool(tokens, kernel, bias):
    """softmax over tokens of ``tokens @ kernel + bias``, then the weighted sum, in float32."""
    tokens = tf.cast(tokens, tf.float32)
    scores = tf.einsum("bnd,do->bno", tokens, kernel) + bias
    weights = tf.nn.softmax(scores, axis=1)
    return tf.einsum("bno,bnd->bd", weights, tokens)
