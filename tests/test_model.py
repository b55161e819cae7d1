import keras
import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from helpers import assert_same_weights, keras_model_roundtrip, random_images


@pytest.fixture(scope="module")
def small():
    return cct_fast.create_model("cct_2_3x2_32")


def test_softmax_activation_and_features(small, rng):
    images = random_images(rng, small)
    logits = np.asarray(small(images))
    probabilities = cct_fast.create_model("cct_2_3x2_32", classifier_activation="softmax")
    probabilities.set_weights(small.get_weights())
    np.testing.assert_allclose(np.asarray(probabilities(images)),
                               tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-7)
    features = cct_fast.create_model("cct_2_3x2_32", include_top=False)
    assert features(images).shape == (2, 128)
    assert features.head is None


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "cct_2_3x2_32_sine", "cvt_2_4_32", "vit_2_4_32"])
def test_keras_save_and_load_round_trip(name, tmp_path, rng):
    model = cct_fast.create_model(name, classifier_activation="softmax", num_classes=4)
    images = random_images(rng, model)
    restored = keras_model_roundtrip(model, tmp_path / "model.keras")
    assert type(restored) is cct_fast.CCT
    assert restored.get_config() == model.get_config()
    assert_same_weights(model, restored)
    np.testing.assert_array_equal(np.asarray(restored(images)), np.asarray(model(images)))


def test_training_is_stochastic_and_inference_is_not(rng):
    model = cct_fast.create_model("cct_2_3x2_32", dropout=0.1)
    images = random_images(rng, model)
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(model(images)))
    assert not np.allclose(np.asarray(model(images, training=True)),
                           np.asarray(model(images, training=True)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_lowers_the_loss(jit_compile, rng):
    model = cct_fast.create_model("cct_2_3x2_32", num_classes=3, jit_compile=jit_compile)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert model.jit_compile is jit_compile
    images = random_images(rng, model, batch=16)
    labels = rng.integers(0, 3, 16)
    history = model.fit(images, labels, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_model_without_positional_embedding_takes_any_size(rng):
    model = cct_fast.create_model("cct_2_3x2_32", positional_embedding="none")
    assert model(rng.standard_normal((1, 48, 40, 3)).astype("float32")).shape == (1, 10)


@pytest.mark.parametrize(
    "shape, dtype, error, message",
    [
        ((32, 32, 3), "float32", ValueError, r"shape \(batch, 32, 32, 3\); got an input of shape \(32, 32, 3\)\. Add a batch axis"),
        ((2, 3, 32, 32), "float32", ValueError, "3 channels in the last axis.*channels-first"),
        ((2, 32, 32, 1), "float32", ValueError, "3 channels in the last axis"),
        ((2, 64, 64, 3), "float32", ValueError,
         "built for 32x32 images.*learnable positional embedding covers 64 tokens.*img_size=64"),
        ((2, 32, 32, 3), "uint8", TypeError, r"floating-point images; got uint8.*/ 255\.0"),
    ],
)
def test_bad_images_get_a_clear_error(small, shape, dtype, error, message):
    with pytest.raises(error, match=message):
        small(np.zeros(shape, dtype))


def test_bad_images_are_refused_by_predict_too(small):
    with pytest.raises(TypeError, match="floating-point images"):
        small.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
