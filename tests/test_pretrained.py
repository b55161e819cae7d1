"""The official-weights registry, served from local files (never the network)."""

import dataclasses
import hashlib
import re

import numpy as np
import pytest

import cct_fast
from cct_fast.core.cards import BASE_URL, CARDS
from cct_fast.weights import pretrained

from helpers import relative_error


def test_each_released_checkpoint_is_on_its_names_card_and_trained_on_its_dataset():
    """The file name says what the checkpoint was trained on; the card says what its head
    and statistics are for."""
    assert set(pretrained.OFFICIAL_WEIGHTS) == {n for n, c in CARDS.items() if c.weights}
    assert len(pretrained.OFFICIAL_WEIGHTS) == 8
    for name, entry in pretrained.OFFICIAL_WEIGHTS.items():
        assert entry.url.startswith(BASE_URL), name
        trained_on = re.search(r"(cifar100|cifar10|flowers102|imagenet)", entry.filename)
        assert trained_on.group(1) == CARDS[name].dataset, name


@pytest.fixture
def served(official, tmp_path, monkeypatch):
    """cct_7_3x1_32's entry pointed at a checkpoint file the test wrote; the Keras cache in
    tmp_path."""
    config = cct_fast.create_model("cct_7_3x1_32").config
    reference = official.trained_like(official.model(config), seed=1)
    source = tmp_path / "server" / "cct_7_3x1_32_cifar10_300epochs.pth"
    source.parent.mkdir()
    official.torch.save(reference.state_dict(), source)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def serve(sha256=None, url=None):
        url = url or source.as_uri()
        entry = dataclasses.replace(
            pretrained.OFFICIAL_WEIGHTS["cct_7_3x1_32"], url=url, sha256=sha256
        )
        monkeypatch.setitem(pretrained.OFFICIAL_WEIGHTS, "cct_7_3x1_32", entry)
        return source

    return reference, serve, tmp_path / "keras" / pretrained.CACHE_SUBDIR


def test_official_weights_are_fetched_converted_once_and_loaded(official, served, rng):
    reference, serve, cache = served
    source = serve()
    serve(sha256=hashlib.sha256(source.read_bytes()).hexdigest())
    model = cct_fast.create_model("cct_7_3x1_32", weights="official")
    images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    assert relative_error(model(images), official.logits(reference, images)) <= 1e-5
    assert sorted(p.name for p in cache.iterdir()) == [
        "cct_7_3x1_32.weights.h5",
        "cct_7_3x1_32_cifar10_300epochs.pth",
    ]
    source.unlink()  # a second use needs neither the network nor the checkpoint
    again = cct_fast.create_model("cct_7_3x1_32", weights="official", num_classes=3)
    np.testing.assert_array_equal(
        again.blocks[0].self_attn.qkv.kernel.numpy(), model.blocks[0].self_attn.qkv.kernel.numpy()
    )


def test_a_download_that_does_not_match_its_hash_leaves_nothing(official, served):
    _, serve, cache = served
    serve(sha256="0" * 64)
    with pytest.raises(ValueError, match="does not match its recorded SHA-256; nothing was kept"):
        cct_fast.create_model("cct_7_3x1_32", weights="official")
    assert list(cache.iterdir()) == []


def test_a_failed_download_leaves_nothing(official, served, tmp_path):
    _, serve, cache = served
    serve(url=(tmp_path / "missing.pth").as_uri())
    with pytest.raises(OSError, match="Could not download"):
        cct_fast.create_model("cct_7_3x1_32", weights="official")
    assert list(cache.iterdir()) == []


def test_a_name_without_official_weights(official):
    with pytest.raises(ValueError, match="'cct_2_3x2_32' has no official pretrained weights"):
        cct_fast.create_model("cct_2_3x2_32", weights="official")
