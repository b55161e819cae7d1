"""Logits of every official name against the official PyTorch architecture.

The official model gets random weights with LayerNorm scales and all biases moved off their
initial values, its state dict goes through the converter, and both run in eval mode on fresh
random images.
"""

import pytest

import cct_fast
import cct_fast.weights.official_keys

from helpers import relative_error

PARITY_TOLERANCE = 1e-5


@pytest.mark.parametrize("name", cct_fast.list_models(modality="image"))
def test_logits_match_the_official_model(official, name, rng):
    model = cct_fast.create_model(name)
    reference = official.trained_like(official.model(model.config), seed=int(rng.integers(1 << 30)))
    cct_fast.weights.official_keys.load_official_state_dict(model, official.state_dict(reference))
    images = rng.standard_normal((2, *model.config.image_size, 3))
    images = images.astype("float32")
    error = relative_error(model(images), official.logits(reference, images))
    assert error <= PARITY_TOLERANCE, f"{name}: relative error {error:.2e}"


@pytest.mark.parametrize("name", cct_fast.list_models(modality="image"))
def test_parameter_count_matches_the_official_model(official, name):
    model = cct_fast.create_model(name)
    reference = official.model(model.config)
    assert model.count_params() == sum(t.numel() for t in reference.state_dict().values())


@pytest.mark.parametrize(
    "name, official_count",
    [("cct_2_3x2_32", 283_723), ("cct_7_3x1_32", 3_760_139), ("cct_14_7x2_224", 22_367_273)],
)
def test_parameter_counts_published_by_the_official_code(name, official_count):
    assert cct_fast.create_model(name).count_params() == official_count


def test_pooled_features_match_the_official_model(official, rng):
    model = cct_fast.create_model("cct_4_3x2_32", include_top=False)
    reference = official.trained_like(official.model(cct_fast.create_model("cct_4_3x2_32").config))
    cct_fast.weights.official_keys.load_official_state_dict(model, official.state_dict(reference))
    reference.classifier.fc = official.torch.nn.Identity()
    images = rng.standard_normal((3, 32, 32, 3)).astype("float32")
    assert relative_error(model(images), official.logits(reference, images)) <= PARITY_TOLERANCE


def test_non_default_architecture_matches(official, rng):
    """The CCT class itself, off the named grid: 5 channels, 64 px, odd kernel and pool sizes."""
    model = cct_fast.CCT(
        img_size=64,
        n_input_channels=5,
        embedding_dim=48,
        num_heads=3,
        num_layers=3,
        mlp_ratio=1.5,
        kernel_size=5,
        n_conv_layers=3,
        pooling_kernel_size=2,
        pooling_stride=2,
        pooling_padding=0,
        num_classes=7,
        positional_embedding="sine",
    )
    reference = official.trained_like(official.model(model.config))
    cct_fast.weights.official_keys.load_official_state_dict(model, official.state_dict(reference))
    images = rng.standard_normal((2, 64, 64, 5)).astype("float32")
    assert relative_error(model(images), official.logits(reference, images)) <= PARITY_TOLERANCE


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "cct_2_3x2_32_sine", "cvt_2_4_32", "vit_2_4_32"])
def test_non_square_images_match_the_official_architecture(official, name, rng):
    """img_size=(height, width), which the official code lacks and vit-pytorch's CCT takes."""
    model = cct_fast.create_model(name, img_size=(32, 48))
    assert model.positional_embedding.embedding.shape[1] == 8 * 12 + (name.startswith("vit"))
    reference = official.trained_like(official.model(model.config), seed=int(rng.integers(1 << 30)))
    cct_fast.weights.official_keys.load_official_state_dict(model, official.state_dict(reference))
    images = rng.standard_normal((2, 32, 48, 3)).astype("float32")
    assert relative_error(model(images), official.logits(reference, images)) <= PARITY_TOLERANCE
