"""Dropout whose masks differ between the replicas of a ``tf.distribute`` strategy.

A Keras seed generator's state is one mirrored variable, so under ``MirroredStrategy`` every
replica draws the same mask for its own share of the global batch: the masks repeat every
per-replica batch. :class:`ReplicaSeedGenerator` folds the replica's id into each seed it
hands out; with one replica it hands out Keras' own seeds, so a run on one device draws what
it drew before.
"""

import keras
import tensorflow as tf

from cct_fast.errors import ConfigError


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """``keras.random.SeedGenerator``, its seeds folded with the replica id when a strategy
    has more than one replica in sync (the id counts across workers)."""

    def next(self, ordered=True):
        seed = super().next(ordered)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
        return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), replica)


@keras.saving.register_keras_serializable(package="cct_fast")
class Dropout(keras.layers.Layer):
    """``keras.layers.Dropout`` (same draws on one device), drawing per replica."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"Dropout rate must be in [0, 1), got {rate!r}.")
        self.rate, self.seed = rate, seed
        if rate > 0:
            self.seed_generator = ReplicaSeedGenerator(seed, name="seed_generator")
        self.supports_masking = True

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
