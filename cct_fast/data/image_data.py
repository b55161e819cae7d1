"""Image classification datasets as uint8 NHWC arrays or image files, with their statistics.

``digits`` (scikit-learn's 1,797 8x8 handwritten digits) ships with scikit-learn, so training
works offline out of the box; ``cifar10``/``cifar100`` are fetched by Keras on first use;
``folder:PATH`` reads ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (or ``val``);
``imagenet:PATH`` reads ImageNet in that layout (``train/<wnid>/``, ``val/<wnid>/``) with the
official configs' ImageNet statistics; ``flowers102:PATH`` reads Oxford Flowers-102's published
files, ``flowers102`` the same split from TensorFlow Datasets, and ``tfds:NAME`` any TFDS image
classification set (:mod:`cct_fast.data.tfds_data`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cct_fast.core.cards import DATASETS
from cct_fast.core.config import as_pair
from cct_fast.data.image_files import decodes, unusable_images
from cct_fast.errors import DatasetError

DIGITS_SIDE = 32
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # the split is fixed, so accuracies are comparable between runs
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Oxford Flowers-102's published split (setid.mat): the official configs train on "trnid" and
# validate on "valid"; "tstid" gives the final figure.
FLOWERS_SPLITS = {"flowers102": ("trnid", "valid"), "flowers102-test": ("trnid", "tstid")}
# The same split as TensorFlow Datasets names it in oxford_flowers102.
FLOWERS_TFDS_SPLITS = {"flowers102": ("train", "validation"), "flowers102-test": ("train", "test")}


@dataclasses.dataclass
class Split:
    """Images as a uint8 (N, H, W, 3) array, or as file paths or image files' bytes (as
    TensorFlow Datasets stores them) decoded on the fly."""

    images: np.ndarray | list[str] | list[bytes]
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    @property
    def encoded(self):
        """True where the images are image files' bytes, not paths or pixels."""
        images = self.images
        return isinstance(images, list) and bool(images) and isinstance(images[0], bytes)


@dataclasses.dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    class_names: list[str]
    # Of the images scaled to [0, 1]; None until measured (load_dataset(measure=False)).
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None

    @property
    def num_classes(self):
        return len(self.class_names)


def load_dataset(
    spec: str, image_size: int | tuple[int, int] = 224, measure: bool = True
) -> Dataset:
    """``"digits"``, ``"cifar10"``, ``"cifar100"``, ``"folder:PATH"``, ``"imagenet:PATH"``,
    ``"flowers102[-test][:PATH]"`` or ``"tfds:NAME"``. A folder's or TFDS set's channel
    statistics are those of its images at ``image_size`` (a side or (height, width)), the size
    the model trains at; with ``measure=False`` they are left None, for :func:`measured`."""
    dataset = _read(spec)
    return measured(dataset, image_size) if measure else dataset


def reads_local_files(spec: str) -> bool:
    """Whether ``spec`` names image files on this machine, which :func:`load_dataset` lists
    and checks without TensorFlow."""
    kind, _, path = spec.partition(":")
    return kind in ("folder", "imagenet") or (kind in FLOWERS_SPLITS and bool(path))


def measured(dataset: Dataset, image_size: int | tuple[int, int]) -> Dataset:
    """``dataset`` with its channel statistics, measured at ``image_size`` if it has none."""
    if dataset.mean is not None:
        return dataset
    mean, std = measured_statistics(dataset.train, as_pair(image_size))
    return dataclasses.replace(dataset, mean=mean, std=std)


def _read(spec):
    if spec == "digits":
        return _digits()
    if spec in ("cifar10", "cifar100"):
        return _cifar(spec)
    if spec.startswith("folder:"):
        return _folder(Path(spec.removeprefix("folder:")).expanduser())
    kind, _, path = spec.partition(":")
    if kind in FLOWERS_SPLITS and path:
        return _flowers(Path(path).expanduser(), kind)
    if kind == "tfds" and path:
        return _tfds(spec, path)
    if kind in FLOWERS_SPLITS:
        return _tfds(
            kind,
            "oxford_flowers102",
            *FLOWERS_TFDS_SPLITS[kind],
            _official_statistics("flowers102"),
        )
    if spec.startswith("imagenet:"):
        root = Path(spec.removeprefix("imagenet:")).expanduser()
        return _folder(root, "imagenet", _official_statistics("imagenet"))
    raise DatasetError(
        f"Unknown dataset {spec!r}: expected 'digits', 'cifar10', 'cifar100', 'folder:PATH', "
        "'imagenet:PATH' (ImageNet's train/<wnid>/ and val/<wnid>/ folders) or "
        "'flowers102:PATH' (Oxford Flowers-102's jpg/, imagelabels.mat and setid.mat; "
        "'flowers102-test:PATH' evaluates on its test split; without :PATH, from TensorFlow "
        "Datasets) or 'tfds:NAME' (a TensorFlow Datasets image classification set)."
    )


def _statistics(images):
    """Per-channel mean and std of 0..255 images scaled to [0, 1], accumulated one image at a
    time, so that only one image is ever held."""
    count, total, squares = 0, np.zeros(3), np.zeros(3)
    for image in images:
        pixels = np.asarray(image, np.float64).reshape(-1, 3) / 255.0
        count += len(pixels)
        total += pixels.sum(0)
        squares += np.square(pixels).sum(0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    return tuple(mean.round(4)), tuple(std.round(4))


def _digits():
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 grey levels -> 0..255, bilinear up to 32x32, grey -> RGB.
    small = (digits.images * (255.0 / 16.0))[..., None].astype(np.float32)
    large = tf.image.resize(small, (DIGITS_SIDE, DIGITS_SIDE), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(large), 0, 255).astype(np.uint8), 3, axis=-1)
    train_x, test_x, train_y, test_y = train_test_split(
        images,
        digits.target.astype(np.int32),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=digits.target,
    )
    mean, std = _statistics(train_x)
    return Dataset(
        "digits",
        Split(train_x, train_y),
        Split(test_x, test_y),
        [str(d) for d in range(10)],
        mean,
        std,
    )


def _cifar(name):
    import keras

    module = getattr(keras.datasets, name)
    try:
        (train_x, train_y), (test_x, test_y) = module.load_data()
    except Exception as error:  # network errors come as many types
        raise DatasetError(
            f"Could not fetch {name} ({type(error).__name__}: {error}). Keras downloads it on "
            f"first use into ~/.keras/datasets; on an offline machine copy it there, or train on "
            f"'digits' or 'folder:PATH'."
        ) from None
    mean, std = _official_statistics(name)
    classes = [str(i) for i in range(int(train_y.max()) + 1)]
    return Dataset(
        name,
        Split(train_x, train_y.reshape(-1).astype(np.int32)),
        Split(test_x, test_y.reshape(-1).astype(np.int32)),
        classes,
        mean,
        std,
    )


def _flowers(root, kind):
    """Oxford Flowers-102 from its published files: ``jpg/image_NNNNN.jpg``,
    ``imagelabels.mat`` (a label 1..102 per image) and ``setid.mat`` (1-based image numbers
    of each split)."""
    from scipy.io import loadmat

    files = [root / "imagelabels.mat", root / "setid.mat", root / "jpg"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DatasetError(
            f"Flowers-102 at {root} lacks {', '.join(missing)}: download 102flowers.tgz, "
            "imagelabels.mat and setid.mat from the Oxford VGG page and unpack the archive "
            "there (it makes jpg/)."
        )
    try:
        labels = loadmat(files[0])["labels"].reshape(-1).astype(np.int64) - 1
        split_ids = loadmat(files[1])
        train_key, test_key = FLOWERS_SPLITS[kind]
        ids = [split_ids[key].reshape(-1).astype(np.int64) for key in (train_key, test_key)]
    except (ValueError, KeyError, OSError) as error:
        raise DatasetError(
            f"Flowers-102 at {root}: cannot read its .mat files ({error})."
        ) from None
    if (
        labels.min() < 0
        or labels.max() > 101
        or any(i.min() < 1 or i.max() > len(labels) for i in ids)
    ):
        raise DatasetError(
            f"Flowers-102 at {root}: labels must be 1..102 and split ids 1..{len(labels)}."
        )

    def split(numbers):
        paths = [str(files[2] / f"image_{n:05d}.jpg") for n in numbers]
        return Split(paths, labels[numbers - 1].astype(np.int32))

    train, test = split(ids[0]), split(ids[1])
    _check_images(train.images + test.images, root)
    names = [f"{i:03d}" for i in range(1, 103)]
    return Dataset(f"{kind}:{root}", train, test, names, *_official_statistics("flowers102"))


def _official_statistics(dataset):
    """The official per-channel (mean, std) of ``dataset`` (its card's)."""
    facts = DATASETS[dataset]
    return facts.mean, facts.std


def _tfds(spec, name, train_split="train", test_split=None, statistics=(None, None)):
    """A TensorFlow Datasets set (:mod:`cct_fast.data.tfds_data`); its channel statistics
    are to be measured unless given."""
    from cct_fast.data.tfds_data import read_tfds

    train, test, names = read_tfds(name, train_split, test_split)
    return Dataset(spec, Split(*train), Split(*test), names, *statistics)


def _folder(root, kind="folder", statistics=(None, None)):
    """The images under ``root``; their channel statistics are to be measured unless given
    (as ImageNet's are, by the official configs)."""
    if not root.is_dir():
        raise DatasetError(f"Image folder {root} does not exist.")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise DatasetError(
            f"Expected {root}/train/<class>/<images> and {root}/test (or val)/<class>/<images>."
        )
    class_names = _class_folders(root / "train")
    if not class_names:
        raise DatasetError(f"{root}/train holds no class folders.")
    unknown = sorted(set(_class_folders(test_dir)) - set(class_names))
    if unknown:
        raise DatasetError(
            f"{test_dir} has class folders that {root}/train lacks: {', '.join(unknown)}. A "
            "model cannot learn a class it never sees: add its training images, or remove them."
        )
    train, test = _files(root / "train", class_names), _files(test_dir, class_names)
    empty = [name for label, name in enumerate(class_names) if label not in train.labels]
    if empty:
        raise DatasetError(
            f"Class folder(s) {', '.join(empty)} under {root}/train hold no images "
            f"({', '.join(IMAGE_SUFFIXES)}): each class folder is a class, so remove the empty "
            "ones or fill them."
        )
    _check_images(train.images + test.images, root)
    return Dataset(f"{kind}:{root}", train, test, class_names, *statistics)


def _class_folders(directory):
    return sorted(p.name for p in directory.iterdir() if p.is_dir())


def _files(directory, class_names):
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = sorted(
            p for p in (directory / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise DatasetError(f"No images ({', '.join(IMAGE_SUFFIXES)}) under {directory}.")
    return Split(paths, np.asarray(labels, np.int32))


def _check_images(paths, root, shown=10):
    """Every image of both splits, before training: a bad file ends a run late, and
    TensorFlow's error does not name it."""
    problems = unusable_images(paths, label=lambda path: Path(path).relative_to(root))
    if problems:
        more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
        raise DatasetError(
            f"{len(problems)} of the {len(paths):,} images under {root} cannot be used:\n  "
            + "\n  ".join(problems[:shown])
            + more
            + "\nRemove or replace them."
        )


def undecodable_images(split) -> list[str]:
    """The files of ``split`` that TensorFlow fails to decode. Each is decoded (slow): for the
    moment a decode has failed in the pipeline, whose error does not name the file."""
    if not isinstance(split.images, list) or split.encoded:
        return []
    return [path for path in split.images if not decodes(path)]


def measured_statistics(split, image_size, sample=500):
    """Channel statistics from up to ``sample`` evenly spaced training images, each decoded,
    resized to ``image_size`` as in training, and let go before the next."""
    import tensorflow as tf

    from cct_fast.data.pipeline import decoder

    decode = decoder(image_size, encoded=split.encoded)
    chosen = split.images[:: max(1, len(split) // sample)]
    return _statistics(decode(tf.constant(path)).numpy() for path in chosen)
