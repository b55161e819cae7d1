"""Sequence pooling (CCT, CVT) and the classification head."""

import warnings

import keras
import numpy as np

from cct_fast.compute import DEFAULT_IMPLEMENTATION, dispatch
from cct_fast.core.layers.attention import torch_linear
from cct_fast.errors import CheckpointError


@keras.saving.register_keras_serializable(package="cct_fast")
class SequencePooling(keras.layers.Layer):
    """``softmax_over_tokens(attention_pool(x))``-weighted sum of the tokens: (B, N, D) -> (B, D).

    The model builds it with a float32 policy, so that under mixed precision its weights, the
    softmax and the weighted sum stay in float32.
    """

    def __init__(self, implementation=DEFAULT_IMPLEMENTATION, **kwargs):
        super().__init__(**kwargs)
        self.implementation = dispatch.check_implementation(implementation)

    def build(self, input_shape):
        self.attention_pool = torch_linear(1, name="attention_pool", dtype=self.dtype_policy)
        self.attention_pool.build(input_shape)

    def call(self, tokens, training=False):
        steps = dispatch.path(self.implementation, training=bool(training))
        return steps.sequence_pool(self.attention_pool, tokens)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "implementation": self.implementation}


@keras.saving.register_keras_serializable(package="cct_fast")
class ClassifierHead(keras.layers.Dense):
    """The final Linear layer. Loading weights for another class count keeps this head freshly
    initialised and warns, as the official ``fc_check`` does, so that a checkpoint can be
    fine-tuned on a new label set."""

    def load_own_variables(self, store):
        if "0" not in store:
            warnings.warn(
                "Not loading the classifier head: the weights hold none (saved with "
                "include_top=False). The head stays freshly initialised.",
                stacklevel=2,
            )
            return
        stored_kernel = np.asarray(store["0"])
        if stored_kernel.shape != tuple(self.kernel.shape):
            if stored_kernel.ndim != 2 or stored_kernel.shape[0] != self.kernel.shape[0]:
                raise CheckpointError(
                    f"Classifier kernel of shape {stored_kernel.shape} cannot be loaded into "
                    f"{self.path!r} of shape {tuple(self.kernel.shape)}: the feature width differs."
                )
            warnings.warn(
                f"Not loading the classifier head: the weights have {stored_kernel.shape[1]} "
                f"classes, the model {self.units}. The head stays freshly initialised.",
                stacklevel=2,
            )
            return
        super().load_own_variables(store)
