"""RandAugment as timm applies it, from Keras' augmentation layers.

Keras' ``RandAugment`` picks its ops once per batch and, to pick them in a graph, runs every
one of its 11 layers on the whole batch for each op and keeps one result with ``where``: 22
full-batch transforms for 2 ops. At 224 px that was 46 ms per image on 2 cores, most of the
input pipeline's time (``benchmarks/RESULTS.md``). timm's ``rand-m9-mstd0.5`` picks the ops
per image (with replacement) and applies each with probability 0.5. :class:`PerImageRandAugment`
does that with the same Keras layers, each running only on the images that drew it.

Its draws come from stateful generators seeded per epoch, so it must run in order (a batch at
a time, as the pipeline runs it) for an epoch to draw the same in every run.
"""

from __future__ import annotations

import keras
import tensorflow as tf

OP_PROBABILITY = 0.5  # timm's AugmentOp(prob=0.5) for every RandAugment op


class PerImageRandAugment:
    """``num_ops`` ops per image out of Keras' RandAugment layers, each applied with
    probability :data:`OP_PROBABILITY`, magnitudes drawn as Keras draws them from ``factor``."""

    def __init__(self, num_ops, factor, seed, value_range=(0, 255)):
        self.num_ops = num_ops
        keras_layer = keras.layers.RandAugment(
            value_range=value_range, num_ops=num_ops, factor=factor, seed=seed
        )
        # Keras' own list of the layers its RandAugment chooses from.
        self.layers = [getattr(keras_layer, name) for name in keras_layer._AUGMENT_LAYERS]
        self.choices = tf.random.Generator.from_seed(seed)

    def __call__(self, images):
        images = tf.cast(images, tf.float32)
        count = tf.shape(images)[0]
        for _ in range(self.num_ops):
            chosen = self.choices.uniform((count,), 0, len(self.layers), dtype=tf.int32)
            applied = self.choices.uniform((count,)) < OP_PROBABILITY
            for index, layer in enumerate(self.layers):
                rows = tf.where(applied & (chosen == index))
                images = tf.cond(
                    tf.size(rows) > 0,
                    lambda layer=layer, rows=rows, images=images: tf.tensor_scatter_nd_update(
                        images,
                        rows,
                        tf.cast(layer(tf.gather_nd(images, rows), training=True), tf.float32),
                    ),
                    lambda images=images: images,
                )
        return images
