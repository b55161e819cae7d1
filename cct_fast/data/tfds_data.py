"""Image classification sets of TensorFlow Datasets: ``tfds:NAME``, and Flowers-102 by the
name of its TFDS set, ``oxford_flowers102``.

A set is prepared as TFDS prepares it on first use (downloaded into its data folder,
``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``) and read whole into memory: images of one
RGB shape as a uint8 array (CIFAR's), others as their image files' bytes, which the input
pipeline decodes as it decodes image files (Flowers-102: about 330 MB). ImageNet (150 GB)
belongs in ``imagenet:PATH``.
"""

from __future__ import annotations

import os

import numpy as np

from cct_fast.base.optional import require
from cct_fast.errors import DatasetError


def read_tfds(name: str, train_split: str = "train", test_split: str | None = None):
    """The TFDS set ``name`` as ``((train images, labels), (test images, labels), class
    names)``: ``train_split`` to train on, ``test_split`` (default ``test``, else
    ``validation``) to evaluate on; images as a uint8 array or a list of files' bytes.
    :func:`cct_fast.data.image_data.load_dataset` makes the dataset of it."""
    tfds = _tfds()
    try:
        # TFDS reads TFDS_DATA_DIR once, at its import; this reads it at each load.
        builder = tfds.builder(name, data_dir=os.environ.get("TFDS_DATA_DIR"))
    except tfds.core.registered.DatasetNotFoundError as error:
        first = str(error).splitlines()[0]
        raise DatasetError(f"TensorFlow Datasets has no set {name!r}: {first}") from None
    features = builder.info.features
    image = features["image"] if "image" in features else None
    label = features["label"] if "label" in features else None
    if not isinstance(image, tfds.features.Image) or not isinstance(
        label, tfds.features.ClassLabel
    ):
        raise DatasetError(
            f"tfds:{name} is not an image classification set: cct_fast reads an 'image' "
            f"(Image) and a 'label' (ClassLabel); it has {sorted(features.keys())}."
        )
    _prepare(builder, name)
    splits = set(builder.info.splits)
    test_split = test_split or ("test" if "test" in splits else "validation")
    for split in (train_split, test_split):
        if split not in splits:
            raise DatasetError(f"tfds:{name} has no split {split!r}; it has {sorted(splits)}.")
    pixels = None not in image.shape and image.shape[-1] == 3
    train, test = (_read(builder, split, pixels, tfds) for split in (train_split, test_split))
    return train, test, list(label.names)


def _tfds():
    return require("tensorflow_datasets", "A TensorFlow Datasets set", "'cct-fast[tfds]'")


def _prepare(builder, name):
    """TFDS' own first use: download and prepare, unless its data folder holds the set."""
    if builder.is_prepared():
        return
    try:
        builder.download_and_prepare()
    except Exception as error:  # TFDS raises whatever its download or builder raised
        raise DatasetError(
            f"tfds:{name} is not prepared in {builder.data_dir}, and preparing it failed "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"Offline: prepare it where the internet is reachable (`tfds build {name}`) and "
            "copy the data folder here (or point TFDS_DATA_DIR at it)."
        ) from None


def _read(builder, split, pixels, tfds):
    """One split: pixels where every image has one RGB shape, else the files' bytes."""
    decoders = None if pixels else {"image": tfds.decode.SkipDecoding()}
    dataset = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    images, labels = [], []
    for example in dataset.as_numpy_iterator():
        images.append(example["image"])
        labels.append(example["label"])
    return np.stack(images) if pixels else images, np.asarray(labels, np.int32)
