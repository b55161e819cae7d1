"""Multi-head self-attention with one fused qkv projection, as the official ``Attention``."""

import keras
import tensorflow as tf
from keras import ops

from cct_fast import fused, kernels
from cct_fast.layers.initializers import TorchTruncatedNormal


def torch_linear(units, use_bias=True, name=None, dtype=None):
    """A Dense layer initialised as the official ``init_weight`` does for ``nn.Linear``."""
    return keras.layers.Dense(
        units, use_bias=use_bias, kernel_initializer=TorchTruncatedNormal(0.02),
        bias_initializer="zeros", name=name, dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="cct_fast")
class MultiHeadSelfAttention(keras.layers.Layer):
    """``qkv`` (no bias) -> heads -> softmax(q k^T * head_dim**-0.5) v -> ``proj`` (bias).

    Dropout on the attention probabilities (``attention_dropout``) and after the output
    projection (``projection_dropout``), both active in training only. The softmax runs in
    float32 under mixed precision. ``implementation="reference"`` is one Keras op per step;
    ``"fused"`` (see :mod:`cct_fast.fused`) computes the same with the same weights;
    ``"custom"``/``"auto"`` use the fused attention op of :mod:`cct_fast.kernels` there.
    """

    def __init__(self, num_heads, attention_dropout=0.1, projection_dropout=0.0,
                 implementation="fused", **kwargs):
        super().__init__(**kwargs)
        self.implementation = fused.check_implementation(implementation)
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.projection_dropout = projection_dropout
        self.attention_drop = keras.layers.Dropout(attention_dropout, name="attention_drop")
        self.projection_drop = keras.layers.Dropout(projection_dropout, name="projection_drop")

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                f"Attention width {dim} is not divisible by num_heads={self.num_heads}."
            )
        self.qkv = torch_linear(3 * dim, use_bias=False, name="qkv")
        self.proj = torch_linear(dim, name="proj")
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, x, training=False):
        if self.implementation != "reference":
            return self._call_fused(x, training)
        dim = x.shape[-1]
        head_dim = dim // self.num_heads
        tokens = ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (-1, tokens, 3, self.num_heads, head_dim))
        q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3, axis=0)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (head_dim**-0.5)
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), x.dtype)
        weights = self.attention_drop(weights, training=training)
        out = ops.reshape(ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3)), (-1, tokens, dim))
        return self.projection_drop(self.proj(out), training=training)

    def _call_fused(self, x, training):
        dim = x.shape[-1]
        scale = (dim // self.num_heads) ** -0.5
        qkv = fused.linear(tf.reshape(x, (-1, dim)), self.qkv.kernel)
        dropout = bool(training) and self.attention_dropout > 0
        if kernels.runs_custom(self.implementation, qkv.dtype, attention_dropout=dropout):
            packed = tf.reshape(qkv, (tf.shape(x)[0], tf.shape(x)[1], 3 * dim))
            attended = tf.reshape(kernels.fused_attention(packed, self.num_heads, scale),
                                  (-1, dim))
        else:
            attended = fused.attention(
                qkv, tf.shape(x)[1], self.num_heads, scale,
                dropout=lambda weights: self.attention_drop(weights, training=training))
        out = fused.linear(attended, self.proj.kernel, self.proj.bias)
        return self.projection_drop(tf.reshape(out, tf.shape(x)), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "attention_dropout": self.attention_dropout,
            "projection_dropout": self.projection_dropout,
            "implementation": self.implementation,
        }
