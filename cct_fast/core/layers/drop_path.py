"""Stochastic depth that drops whole samples, as the official ``DropPath``."""

import keras
from keras import ops

from cct_fast.core.layers.replica_dropout import ReplicaSeedGenerator
from cct_fast.errors import ConfigError


@keras.saving.register_keras_serializable(package="cct_fast")
class DropPath(keras.layers.Layer):
    """In training, zeroes a residual branch for a random subset of samples and scales the
    kept ones by ``1 / (1 - rate)``; the identity in inference. Each replica of a strategy
    draws its own samples (:class:`ReplicaSeedGenerator`)."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"DropPath rate must be in [0, 1), got {rate!r}.")
        self.rate = rate
        self.seed = seed
        self.seed_generator = ReplicaSeedGenerator(seed, name="seed_generator")

    def call(self, x, training=False):
        if not self.active(training):
            return x
        kept = ops.reshape(self._kept(ops.shape(x)[0]), (-1,) + (1,) * (len(x.shape) - 1))
        return x / (1.0 - self.rate) * ops.cast(kept, x.dtype)

    def active(self, training):
        """Whether a call in this mode drops samples (else it is the identity)."""
        return bool(training) and self.rate > 0.0

    def sample_scale(self, batch):
        """A fresh draw's factor per sample, (batch,) float32: 0, or ``1 / (1 - rate)`` for the
        kept ones. The custom ops take it to scale a branch inside the residual add."""
        return ops.cast(self._kept(batch), "float32") / (1.0 - self.rate)

    def _kept(self, batch):
        return keras.random.uniform((batch,), seed=self.seed_generator) < 1.0 - self.rate

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
