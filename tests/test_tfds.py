"""TensorFlow Datasets sets: ``flowers102`` through TFDS' own oxford_flowers102 builder run on
the published files the test writes, ``tfds:NAME`` on a small set the test registers, and the
errors of a set that is missing, not image classification, or cannot be prepared offline."""

import numpy as np
import pytest
import tensorflow as tf

from cct_fast import train
from cct_fast.core.cards import DATASETS
from cct_fast.data import image_data as data
from cct_fast.errors import MissingDependency

from helpers import write_flowers_files

tfds = pytest.importorskip("tensorflow_datasets")

PETAL_NAMES = ["rose", "tulip", "daisy"]


class TinyPetals(tfds.core.GeneratorBasedBuilder):
    """A registered TFDS set (tfds:tiny_petals): 16x16 RGB images, so read as pixels."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(16, 16, 3)),
                "label": tfds.features.ClassLabel(names=PETAL_NAMES),
            }
        )
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(9, seed=0),
            "test": self._generate_examples(6, seed=1),
        }

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for index in range(count):
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            yield index, {"image": image, "label": index % 3}


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    return tmp_path / "tensorflow_datasets"


@pytest.fixture
def published_flowers(tmp_path, rng, monkeypatch):
    """The published Flowers-102 files, where TFDS' download manager would put them."""
    root = write_flowers_files(tmp_path / "flowers", rng)
    files = {"images": root, "labels": root / "imagelabels.mat", "setid": root / "setid.mat"}
    monkeypatch.setattr(
        tfds.download.DownloadManager, "download_and_extract", lambda self, urls: files
    )
    return root


def _examples(split):
    """``split`` as a sorted list of (label, decoded pixels): TFDS orders examples by a hash
    of their keys. Files' bytes are decoded as they are, paths read first."""
    read = (lambda image: image) if split.encoded else tf.io.read_file
    pixels = (tf.io.decode_image(read(image), channels=3).numpy() for image in split.images)
    return sorted((int(y), x.tobytes()) for x, y in zip(pixels, split.labels, strict=True))


def test_flowers102_from_tfds_is_the_official_split_of_the_published_files(
    data_dir, published_flowers
):
    from_tfds = data.load_dataset("flowers102")
    from_files = data.load_dataset(f"flowers102:{published_flowers}")
    assert (data_dir / "oxford_flowers102").is_dir()  # prepared by TFDS' builder
    flowers = DATASETS["flowers102"]
    assert from_tfds.train.encoded and (from_tfds.mean, from_tfds.std) == (
        flowers.mean,
        flowers.std,
    )
    assert len(from_tfds.class_names) == 102 and from_tfds.class_names[0] == "pink primrose"
    for split in ("train", "test"):  # trnid and valid
        assert _examples(getattr(from_files, split)) == _examples(getattr(from_tfds, split))
    final = data.load_dataset("flowers102-test")  # prepared once: no download this time
    np.testing.assert_array_equal(np.sort(final.test.labels), [0, 0, 1, 1, 101, 101])


def test_a_run_on_flowers102_from_tfds_decodes_the_stored_files(
    tmp_path, data_dir, published_flowers
):
    """Training crops and the evaluation crop both read the images' encoded bytes."""
    run = train.fit(
        out=tmp_path / "run",
        model="cct_2_3x2_32",
        dataset="flowers102",
        epochs=1,
        batch_size=3,
        crop_pct=0.875,
        verbose=0,
    )
    assert len(run.history) == 1 and run.model.config.num_classes == 102
    images, _ = next(iter(run.epoch_batches(0)))
    assert images.shape == (3, 32, 32, 3) and np.isfinite(images).all()
    assert train.evaluate(tmp_path / "run", "flowers102")["accuracy"] == pytest.approx(
        run.history[0]["test_accuracy"]
    )


def test_tfds_name_reads_an_image_classification_set(data_dir):
    dataset = data.load_dataset("tfds:tiny_petals", image_size=16)
    assert dataset.name == "tfds:tiny_petals" and dataset.class_names == PETAL_NAMES
    assert isinstance(dataset.train.images, np.ndarray) and dataset.train.images.shape == (
        9,
        16,
        16,
        3,
    )
    assert sorted(dataset.test.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    pixels = dataset.train.images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(dataset.mean, pixels.mean(0), atol=5e-5)  # to 4 places
    np.testing.assert_allclose(dataset.std, pixels.std(0), atol=5e-5)


def test_tfds_sets_that_cannot_be_read_get_clear_errors(data_dir, monkeypatch):
    with pytest.raises(data.DatasetError, match="TensorFlow Datasets has no set 'no_such_set'"):
        data.load_dataset("tfds:no_such_set")
    with pytest.raises(data.DatasetError, match="tfds:imdb_reviews is not an image classif"):
        data.load_dataset("tfds:imdb_reviews")

    def offline(self, urls):
        raise ConnectionError("Failed to resolve 'thor.robots.ox.ac.uk'")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    with pytest.raises(
        data.DatasetError,
        match=r"tfds:oxford_flowers102 is not prepared in .*preparing it failed "
        r"\(ConnectionError: Failed to resolve .*Offline: prepare it",
    ):
        data.load_dataset("flowers102")
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    with pytest.raises(
        MissingDependency, match="needs the tensorflow_datasets package: pip install 'cct-fast"
    ):
        data.load_dataset("tfds:tiny_petals")
