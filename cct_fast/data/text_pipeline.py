"""tf.data input pipelines of the text models: strings through a
:class:`~cct_fast.data.text_encoder.TextEncoder` to ``((token_ids, mask), targets)``.

The order of a training epoch comes from a permutation seeded by ``(recipe.seed, epoch)``, as
for images, so a resumed run sees the same batches. Texts are tokenized a batch at a time on
the CPU (tensorflow-text), never inside the model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cct_fast.data.pipeline import (
    FIXED_PARALLELISM,
    PARALLEL_CALLS,
    PREFETCH_BATCHES,
    epoch_seed,
)
from cct_fast.data.text_encoder import PADDING_ID


def _source(split, order=None):
    texts, labels = split.texts, split.labels
    if order is not None:
        texts, labels = [texts[i] for i in order], labels[order]
    return tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string), labels))


def text_training_batches(split, num_classes, encoder, recipe, epoch):
    """One training epoch: ((token_ids, mask), label-smoothed one-hot targets), each text's
    pieces randomly deleted at ``recipe.token_dropout``."""
    order = np.random.default_rng(epoch_seed(recipe, epoch, 0)).permutation(len(split))
    smoothing = recipe.label_smoothing
    dropout_seed = epoch_seed(recipe, epoch, 1)

    def encode(index, batch):
        texts, labels = batch
        targets = tf.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
        ids, mask = encoder(texts)
        if recipe.token_dropout:
            seed = tf.stack([tf.constant(dropout_seed, tf.int64), index])
            ids, mask = delete_tokens(ids, mask, recipe.token_dropout, seed)
        return (ids, mask), targets

    return (
        _source(split, order)
        .batch(recipe.batch_size, drop_remainder=len(split) >= recipe.batch_size)
        .enumerate()
        .map(encode, num_parallel_calls=PARALLEL_CALLS)
        .prefetch(PREFETCH_BATCHES)
        .with_options(FIXED_PARALLELISM)
    )


def delete_tokens(ids, mask, rate, seed):
    """Random deletion: each real token of each row dropped with probability ``rate`` (from
    the stateless ``seed``), the kept ones moved up in order and the row padded again; a row
    that would lose every token keeps them all."""
    keep = mask & (tf.random.stateless_uniform(tf.shape(ids), seed) >= rate)
    keep = tf.where(tf.reduce_any(keep, axis=1, keepdims=True), keep, mask)
    # A stable sort of "not kept" puts the kept positions first, in their order.
    order = tf.argsort(tf.cast(~keep, tf.int32), axis=1, stable=True)
    kept = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1, keepdims=True)
    new_mask = tf.range(tf.shape(ids)[1])[None, :] < kept
    new_ids = tf.where(new_mask, tf.gather(ids, order, batch_dims=1), PADDING_ID)
    return new_ids, new_mask


def text_evaluation_batches(split, encoder, batch_size):
    """((token_ids, mask), integer labels), in the split's order."""
    return (
        _source(split)
        .batch(batch_size)
        .map(lambda texts, labels: (encoder(texts), labels), num_parallel_calls=PARALLEL_CALLS)
        .prefetch(PREFETCH_BATCHES)
        .with_options(FIXED_PARALLELISM)
    )
