"""tf.data input pipelines for training and evaluation, built from the recipe.

Training, per image: random resized crop (``crop_scale``, ``crop_ratio``,
``train_interpolation``) and horizontal flip; per batch: RandAugment (its ops drawn per image,
:mod:`cct_fast.data.randaugment`), normalisation by the dataset's mean and std, random
erasing (``random_erasing``), label-smoothed one-hot targets, then MixUp or CutMix (CutMix
with probability ``mixup_switch_prob``) until ``mixup_off_epoch`` (0: throughout, as timm).

Every random choice of epoch ``e`` comes from ``(recipe.seed, e)``: the order from a seeded
permutation, the per-image crops and flips from stateless ops keyed by the image's place in
the epoch, and the batch-level Keras layers from generators built for the epoch and run in
order. So an epoch sees the same images the same way whether or not the run was resumed
before it.

Parallelism is fixed (a worker per core, two batches prefetched) and tf.data's autotuner is
off: its thread sleeps through periods that double up to seconds, and deleting an iterator
waits for the current period to end. Keras deletes the iterator after every ``fit`` and
``evaluate``, so with the autotuner an epoch lost up to half its length
(``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from cct_fast.data.randaugment import PerImageRandAugment

PARALLEL_CALLS = os.cpu_count() or 1
PREFETCH_BATCHES = 2


def _options_without_autotuner():
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


FIXED_PARALLELISM = _options_without_autotuner()


def epoch_seed(recipe, epoch, stream):
    """A distinct integer seed for each (run seed, epoch, stream)."""
    return int(np.random.default_rng([recipe.seed, epoch, stream]).integers(2**31 - 1))


def decoder(image_size, interpolation="bilinear", encoded=False):
    """Map function turning a path (``encoded``: an image file's bytes; or a uint8 image)
    into a float32 image of ``image_size`` (height, width) pixels, or of its own size where
    ``image_size`` is None."""

    def decode(image):
        if image.dtype == tf.string:
            data = image if encoded else tf.io.read_file(image)
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        if image_size is None or tuple(image.shape[:2]) == tuple(image_size):
            return image
        return _resize(image, image_size, interpolation)

    return decode


def _centre_crop(image_size, interpolation, crop_pct, encoded=False):
    """Map function: timm's evaluation transform (Resize(int(image_size / crop_pct)) of the shorter
    side, then CenterCrop(image_size)) of a path, encoded image or uint8 image."""
    read = decoder(None, encoded=encoded)
    height, width = image_size
    scaled = int(min(height, width) / crop_pct)

    def transform(image):
        image = read(image)
        shape = tf.shape(image)[:2]
        short = tf.reduce_min(shape)
        # As torchvision computes them: Resize(int) takes each side to int(scaled * side / short),
        # truncated, so the shorter one to `scaled`; CenterCrop starts at
        # round((new - image_size) / 2), halves to even as Python's round (and tf.round) go.
        new = tf.maximum(scaled * shape // short, [height, width])
        image = _resize(image, new, interpolation)
        top, left = tf.unstack(tf.cast(tf.round((new - [height, width]) / 2), tf.int32))
        return tf.ensure_shape(image[top : top + height, left : left + width], (height, width, 3))

    return transform


def _resize(image, image_size, method):
    """Resized in float32; bicubic overshoots, so the values are clipped back to 0..255."""
    image = tf.image.resize(image, image_size, method=method)
    return image if method == "bilinear" else tf.clip_by_value(image, 0.0, 255.0)


def _source(split, order=None):
    images, labels = split.images, split.labels
    if order is not None:
        images = [images[i] for i in order] if isinstance(images, list) else images[order]
        labels = labels[order]
    return tf.data.Dataset.from_tensor_slices((images, labels))


def evaluation_batches(
    split, dataset, image_size, batch_size, interpolation="bilinear", crop_pct=0.0
):
    """Test images at ``image_size`` (height, width), normalised, with integer labels; in file
    order. ``crop_pct`` 0 resizes each image to ``image_size``; otherwise, as timm evaluates,
    its shorter side goes to ``image_size / crop_pct`` (aspect kept), then the centre
    ``image_size`` is cut."""
    mean, std = _scale(dataset)
    decode = (
        decoder(image_size, interpolation, split.encoded)
        if not crop_pct
        else _centre_crop(image_size, interpolation, crop_pct, split.encoded)
    )
    return (
        _source(split)
        .map(lambda x, y: ((decode(x) - mean) / std, y), num_parallel_calls=PARALLEL_CALLS)
        .batch(batch_size)
        .prefetch(PREFETCH_BATCHES)
        .with_options(FIXED_PARALLELISM)
    )


def training_batches(split, dataset, recipe, image_size, epoch):
    """The batches of one training epoch: (normalised float32 images, soft targets)."""
    order = np.random.default_rng(epoch_seed(recipe, epoch, 0)).permutation(len(split))
    decode = decoder(image_size, encoded=split.encoded)
    crop_seed = epoch_seed(recipe, epoch, 1)

    def per_image(index, example):
        image, label = example
        seed = tf.stack([tf.constant(crop_seed, tf.int64), index])
        image = _random_resized_crop(decode(image), image_size, recipe, seed)
        return image, label

    batches = (
        _source(split, order)
        .enumerate()
        .map(per_image, num_parallel_calls=PARALLEL_CALLS)
        .batch(recipe.batch_size, drop_remainder=len(split) >= recipe.batch_size)
    )
    # The Keras layers draw from stateful generators: run them in order (batch-wise, so one
    # call per batch), which keeps the draws of an epoch the same in every run.
    augment = _outside_the_pipeline_graph(
        _batch_augmentation(dataset, recipe, epoch), (*image_size, 3), dataset.num_classes
    )
    return batches.map(augment).prefetch(PREFETCH_BATCHES).with_options(FIXED_PARALLELISM)


def _outside_the_pipeline_graph(augment, image_shape, classes):
    """``augment`` as a ``tf.function`` that the pipeline calls through ``tf.py_function``.
    tf.data runs a function inside its own graph about 2.5x slower than TensorFlow runs the
    same ``tf.function`` (the batch augmentation at 224 px: 5.4 against 2.2 ms per image,
    ``benchmarks/RESULTS.md``); still one call per batch, in order."""
    compiled = tf.function(augment)

    def call(images, labels):
        images, targets = tf.py_function(compiled, [images, labels], [tf.float32, tf.float32])
        return (
            tf.ensure_shape(images, (None, *image_shape)),
            tf.ensure_shape(targets, (None, classes)),
        )

    return call


def _random_resized_crop(image, image_size, recipe, seed):
    """torchvision's RandomResizedCrop (area in ``crop_scale``, aspect ratio in
    ``crop_ratio``, back to ``image_size`` by ``train_interpolation``: bilinear, bicubic, or either
    with even odds, as timm's "random") and a horizontal flip with probability ``hflip``, from
    stateless ops."""
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        tf.zeros((1, 0, 4)),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=recipe.crop_ratio,
        area_range=recipe.crop_scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop)
    if recipe.train_interpolation == "random":
        bicubic_seed = tf.random.experimental.stateless_fold_in(seed, 2)
        image = tf.cond(
            tf.random.stateless_uniform((), bicubic_seed) < 0.5,
            lambda: _resize(crop, image_size, "bicubic"),
            lambda: _resize(crop, image_size, "bilinear"),
        )
    else:
        image = _resize(crop, image_size, recipe.train_interpolation)
    image = tf.ensure_shape(image, (*image_size, 3))
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    flip = tf.random.stateless_uniform((), flip_seed) < recipe.hflip
    return tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)


def _scale(dataset):
    mean = tf.constant(dataset.mean, tf.float32) * 255.0
    std = tf.constant(dataset.std, tf.float32) * 255.0
    return mean, std


def _batch_augmentation(dataset, recipe, epoch):
    import keras

    mean, std = _scale(dataset)
    classes = dataset.num_classes
    smoothing = recipe.label_smoothing
    randaugment = None
    if recipe.randaugment_ops:
        spread = recipe.randaugment_magnitude_std / 10
        centre = recipe.randaugment_magnitude / 10
        # timm samples the magnitude from N(m, mstd); Keras from a range: m +- mstd.
        randaugment = PerImageRandAugment(
            recipe.randaugment_ops,
            factor=(max(0.0, centre - spread), min(1.0, centre + spread)),
            seed=epoch_seed(recipe, epoch, 2),
        )
    mixing = recipe.mixup_off_epoch == 0 or epoch < recipe.mixup_off_epoch
    mixup = cutmix = None
    if mixing and recipe.mixup_alpha:
        mixup = keras.layers.MixUp(alpha=recipe.mixup_alpha, seed=epoch_seed(recipe, epoch, 3))
    if mixing and recipe.cutmix_alpha:
        cutmix = keras.layers.CutMix(
            factor=(recipe.cutmix_alpha, recipe.cutmix_alpha), seed=epoch_seed(recipe, epoch, 4)
        )
    switch = tf.random.Generator.from_seed(epoch_seed(recipe, epoch, 5))
    erasing = None
    if recipe.random_erasing:
        # timm's "pixel" mode: per-pixel N(0, 1) noise in the normalised image.
        erasing = keras.layers.RandomErasing(
            factor=(recipe.random_erasing, recipe.random_erasing),
            value_range=(0, 1),
            seed=epoch_seed(recipe, epoch, 6),
        )

    def augment(images, labels):
        if randaugment is not None:
            images = randaugment(images)
        images = (tf.cast(images, tf.float32) - mean) / std
        if erasing is not None:
            images = erasing(images, training=True)
        targets = tf.one_hot(labels, classes) * (1.0 - smoothing) + smoothing / classes
        if mixup is not None or cutmix is not None:
            data = {"images": images, "labels": targets}
            if mixup is None or cutmix is None:
                data = (mixup or cutmix)(data, training=True)
            else:
                data = tf.cond(
                    switch.uniform(()) < recipe.mixup_switch_prob,
                    lambda: cutmix(data, training=True),
                    lambda: mixup(data, training=True),
                )
            images, targets = data["images"], data["labels"]
        return images, targets

    return augment
