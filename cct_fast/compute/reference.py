"""The reference implementation: each step as the Keras layers and ops that state it plainly.

ONNX export runs this path, and :mod:`cct_fast.export.fusion` finds each layer of the exported
graph by the name scope Keras gives the layer's call (and :data:`GELU_SCOPE` for the GELU), so
the steps here call the sublayers themselves.
"""

import keras
import ml_dtypes
import tensorflow as tf
from keras import ops

GELU_SCOPE = "gelu"


def gelu(x):
    """Exact GELU written with erf, as PyTorch's ``F.gelu``. Keras' ``ops.gelu`` lowers to
    ``erfc``, which ONNX has no operator for, so a model using it could not be exported."""
    with tf.name_scope(GELU_SCOPE):
        return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def layer_norm(norm, x):
    return norm(x)


def residual_layer_norm(norm, x, branch):
    return norm(x + branch)


def dense(layer, x, activation=None):
    """``layer(x)``, then ``"gelu"`` if asked."""
    y = layer(x)
    return gelu(y) if activation == "gelu" else y


def attention(qkv, num_heads, scale, dropout=None, mask=None):
    """softmax(q k^T * scale) v of a packed (batch, tokens, 3 * width) qkv tensor, heads merged
    back to (batch, tokens, width); the softmax in float32. ``mask`` (batch, tokens), boolean:
    a score between two tokens counts only where both are real (:func:`masked_scores`);
    ``dropout`` (a Keras ``Dropout`` layer, or None) applies to the probabilities."""
    tokens, dim = ops.shape(qkv)[1], qkv.shape[-1] // 3
    qkv = ops.reshape(qkv, (-1, tokens, 3, num_heads, dim // num_heads))
    q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3, axis=0)
    scores = ops.cast(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale, "float32")
    if mask is not None:
        scores = masked_scores(scores, mask)
    weights = ops.cast(ops.softmax(scores, axis=-1), qkv.dtype)
    if dropout is not None:
        weights = dropout(weights, training=True)
    return ops.reshape(ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3)), (-1, tokens, dim))


def masked_scores(scores, mask):
    """``scores`` (batch, heads, tokens, tokens) with every pair that involves a padded token
    set to the dtype's most negative value, as the official ``MaskedAttention`` fills them: a
    padded query row then attends uniformly, and no real token attends to padding."""
    mask = ops.cast(mask, "bool")
    pairs = ops.logical_and(mask[:, None, :, None], mask[:, None, None, :])
    dtype = keras.backend.standardize_dtype(scores.dtype)
    lowest = ops.cast(ml_dtypes.finfo(dtype).min, scores.dtype)
    return ops.where(pairs, scores, lowest)


def sequence_pool(layer, tokens):
    """The tokens weighted by the softmax over tokens of ``layer(tokens)``: (B, N, D) -> (B, D)."""
    weights = ops.softmax(layer(tokens), axis=1)
    return ops.squeeze(ops.matmul(ops.transpose(weights, (0, 2, 1)), tokens), axis=1)
