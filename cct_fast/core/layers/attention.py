"""Multi-head self-attention with one fused qkv projection, as the official ``Attention``."""

import keras

from cct_fast.compute import DEFAULT_IMPLEMENTATION, dispatch
from cct_fast.core.layers.initializers import TorchTruncatedNormal
from cct_fast.core.layers.replica_dropout import Dropout
from cct_fast.errors import ConfigError


def torch_linear(units, use_bias=True, name=None, dtype=None):
    """A Dense layer initialised as the official ``init_weight`` does for ``nn.Linear``."""
    return keras.layers.Dense(
        units,
        use_bias=use_bias,
        kernel_initializer=TorchTruncatedNormal(0.02),
        bias_initializer="zeros",
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="cct_fast")
class MultiHeadSelfAttention(keras.layers.Layer):
    """``qkv`` (no bias) -> heads -> softmax(q k^T * head_dim**-0.5) v -> ``proj`` (bias).

    Dropout on the attention probabilities (``attention_dropout``) and after the output
    projection (``projection_dropout``), both active in training only. The softmax runs in
    float32 under mixed precision. ``implementation`` picks how the steps run
    (:mod:`cct_fast.compute.dispatch`); all take the same weights.
    """

    def __init__(
        self,
        num_heads,
        attention_dropout=0.1,
        projection_dropout=0.0,
        implementation=DEFAULT_IMPLEMENTATION,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.implementation = dispatch.check_implementation(implementation)
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.projection_dropout = projection_dropout
        policy = self.dtype_policy
        self.attention_drop = Dropout(attention_dropout, name="attention_drop", dtype=policy)
        self.projection_drop = Dropout(projection_dropout, name="projection_drop", dtype=policy)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ConfigError(
                f"Attention width {dim} is not divisible by num_heads={self.num_heads}."
            )
        policy = self.dtype_policy
        self.qkv = torch_linear(3 * dim, use_bias=False, name="qkv", dtype=policy)
        self.proj = torch_linear(dim, name="proj", dtype=policy)
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, x, training=False, token_mask=None):
        """``token_mask`` (batch, tokens), boolean: attention only between real tokens."""
        steps = self._steps(training)
        attended = self._heads(steps, x, training, token_mask)
        return self.projection_drop(steps.dense(self.proj, attended), training=training)

    def residual_branch(self, x, training=False, token_mask=None):
        """The call's result as the branch of a residual add, with ``proj``'s bias apart where
        the implementation leaves it to the add (``(tokens, bias or None)``, as
        :class:`cct_fast.compute.dispatch.Path`'s residual_dense). Runs inside the calling
        layer's call, whose dtype policy is this layer's, under this layer's name scope as a
        call would be: the ONNX export finds the attention's nodes by it
        (:mod:`cct_fast.export.fusion`)."""
        with keras.name_scope(self.name, caller=self):
            steps = self._steps(training)
            attended = self._heads(steps, x, training, token_mask)
            return steps.residual_dense(self.proj, attended, self.projection_drop, training)

    def _steps(self, training):
        return dispatch.path(self.implementation, self.compute_dtype, training=bool(training))

    def _heads(self, steps, x, training, token_mask):
        """The heads' outputs, merged: (batch, tokens, width), before the output projection."""
        dropout = bool(training) and self.attention_dropout > 0
        return steps.attention(
            steps.dense(self.qkv, x),
            self.num_heads,
            (x.shape[-1] // self.num_heads) ** -0.5,
            dropout=self.attention_drop if dropout else None,
            mask=token_mask,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "attention_dropout": self.attention_dropout,
            "projection_dropout": self.projection_dropout,
            "implementation": self.implementation,
        }
