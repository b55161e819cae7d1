"""The official CCT transformer encoder layer."""

import keras

from cct_fast.compute import DEFAULT_IMPLEMENTATION, dispatch
from cct_fast.compute.fused import LAYER_NORM_EPSILON
from cct_fast.core.layers.attention import MultiHeadSelfAttention, torch_linear
from cct_fast.core.layers.drop_path import DropPath
from cct_fast.core.layers.replica_dropout import Dropout


def layer_norm(name, dtype=None):
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="cct_fast")
class TransformerEncoderLayer(keras.layers.Layer):
    """One encoder layer, in the official order::

        x = x + drop_path(attention(pre_norm(x)))
        x = norm1(x)                                # replaces the residual stream
        x = x + drop_path(dropout2(linear2(dropout1(gelu(linear1(x))))))

    ``norm1`` is applied to the stream itself, not to a branch: this is not the usual
    pre-norm block, and a port that treats it as one computes something else.
    """

    def __init__(
        self,
        num_heads,
        feedforward_dim,
        dropout=0.0,
        attention_dropout=0.1,
        drop_path_rate=0.0,
        implementation=DEFAULT_IMPLEMENTATION,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.implementation = dispatch.check_implementation(implementation)
        self.num_heads = num_heads
        self.feedforward_dim = feedforward_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.drop_path_rate = drop_path_rate
        policy = self.dtype_policy
        self.pre_norm = layer_norm("pre_norm", policy)
        self.self_attn = MultiHeadSelfAttention(
            num_heads,
            attention_dropout=attention_dropout,
            projection_dropout=dropout,
            implementation=implementation,
            name="self_attn",
            dtype=policy,
        )
        self.norm1 = layer_norm("norm1", policy)
        self.dropout1 = Dropout(dropout, name="dropout1", dtype=policy)
        self.dropout2 = Dropout(dropout, name="dropout2", dtype=policy)
        self.drop_path = DropPath(drop_path_rate, name="drop_path", dtype=policy)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.linear1 = torch_linear(self.feedforward_dim, name="linear1", dtype=self.dtype_policy)
        self.linear2 = torch_linear(dim, name="linear2", dtype=self.dtype_policy)
        self.pre_norm.build(input_shape)
        self.self_attn.build(input_shape)
        self.norm1.build(input_shape)
        self.linear1.build(input_shape)
        self.linear2.build(tuple(input_shape[:-1]) + (self.feedforward_dim,))

    def call(self, x, training=False, token_mask=None):
        """``token_mask`` (batch, tokens), boolean: the attention's mask (text models)."""
        steps = dispatch.path(self.implementation, self.compute_dtype, training=bool(training))
        normed = steps.layer_norm(self.pre_norm, x)
        attended, bias = self.self_attn.residual_branch(normed, training, token_mask)
        x = steps.residual_layer_norm(self.norm1, x, attended, self.drop_path, training, bias)
        hidden = self.dropout1(steps.dense(self.linear1, x, "gelu"), training=training)
        branch, bias = steps.residual_dense(self.linear2, hidden, self.dropout2, training)
        return steps.residual_add(x, branch, self.drop_path, training, bias)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "feedforward_dim": self.feedforward_dim,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "drop_path_rate": self.drop_path_rate,
            "implementation": self.implementation,
        }
