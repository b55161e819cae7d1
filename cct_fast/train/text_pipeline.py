"""tf.data input pipelines of the text models: strings through a
:class:`~cct_fast.train.text_encoder.TextEncoder` to ``((token_ids, mask), targets)``.

The order of a training epoch comes from a permutation seeded by ``(recipe.seed, epoch)``, as
for images, so a resumed run sees the same batches. Texts are tokenized a batch at a time on
the CPU (tensorflow-text), never inside the model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cct_fast.train.pipeline import (
    FIXED_PARALLELISM,
    PARALLEL_CALLS,
    PREFETCH_BATCHES,
    epoch_seed,
)


def _source(split, order=None):
    texts, labels = split.texts, split.labels
    if order is not None:
        texts, labels = [texts[i] for i in order], labels[order]
    return tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string), labels))


def text_training_batches(split, num_classes, encoder, recipe, epoch):
    """One training epoch: ((token_ids, mask), label-smoothed one-hot targets)."""
    order = np.random.default_rng(epoch_seed(recipe, epoch, 0)).permutation(len(split))
    smoothing = recipe.label_smoothing

    def encode(texts, labels):
        targets = tf.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
        return encoder(texts), targets

    return (
        _source(split, order)
        .batch(recipe.batch_size, drop_remainder=len(split) >= recipe.batch_size)
        .map(encode, num_parallel_calls=PARALLEL_CALLS)
        .prefetch(PREFETCH_BATCHES)
        .with_options(FIXED_PARALLELISM)
    )


def text_evaluation_batches(split, encoder, batch_size):
    """((token_ids, mask), integer labels), in the split's order."""
    return (
        _source(split)
        .batch(batch_size)
        .map(lambda texts, labels: (encoder(texts), labels), num_parallel_calls=PARALLEL_CALLS)
        .prefetch(PREFETCH_BATCHES)
        .with_options(FIXED_PARALLELISM)
    )
