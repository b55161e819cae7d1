import keras
import numpy as np
import pytest
import tensorflow as tf

import cct_fast

from helpers import assert_same_weights, keras_model_roundtrip, random_images, relative_error


@pytest.fixture(scope="module")
def small():
    return cct_fast.create_model("cct_2_3x2_32")


def test_softmax_activation_and_features(small, rng):
    images = random_images(rng, small)
    logits = np.asarray(small(images))
    probabilities = cct_fast.create_model("cct_2_3x2_32", classifier_activation="softmax")
    probabilities.set_weights(small.get_weights())
    np.testing.assert_allclose(
        np.asarray(probabilities(images)), tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-7
    )
    features = cct_fast.create_model("cct_2_3x2_32", include_top=False)
    assert features.head is None
    own = {v.path.split("/", 1)[1]: v for v in small.weights}
    for variable in features.weights:
        variable.assign(own[variable.path.split("/", 1)[1]])
    pooled = np.asarray(features(images))
    assert pooled.shape == (2, 128)
    head = small.head.kernel.numpy(), small.head.bias.numpy()
    assert relative_error(pooled @ head[0] + head[1], logits) <= 1e-5


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "cct_2_3x2_32_sine", "cvt_2_4_32", "vit_2_4_32"])
def test_keras_save_and_load_round_trip(name, tmp_path, rng):
    model = cct_fast.create_model(name, classifier_activation="softmax", num_classes=4)
    images = random_images(rng, model)
    restored = keras_model_roundtrip(model, tmp_path / "model.keras")
    assert type(restored) is cct_fast.CCT
    assert restored.get_config() == model.get_config()
    assert_same_weights(model, restored)
    np.testing.assert_array_equal(np.asarray(restored(images)), np.asarray(model(images)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_learns_an_easy_task(jit_compile, rng):
    """Each class brightens one colour channel: ten steps learn it (measured: loss 1.0-1.15
    down to 0.013-0.017, every image right)."""
    model = cct_fast.create_model(
        "cct_2_3x2_32",
        num_classes=3,
        jit_compile=jit_compile,
        attention_dropout=0.0,
        stochastic_depth=0.0,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert model.jit_compile is jit_compile
    labels = rng.integers(0, 3, 16)
    images = (
        random_images(rng, model, batch=16)
        + 2.0 * np.eye(3, dtype="float32")[labels][:, None, None, :]
    )
    history = model.fit(images, labels, epochs=10, batch_size=16, verbose=0)
    assert history.history["loss"][0] > 0.9 and history.history["loss"][-1] < 0.1
    assert (model.predict(images, verbose=0).argmax(1) == labels).all()


def test_model_without_positional_embedding_takes_any_size(rng):
    model = cct_fast.create_model("cct_2_3x2_32", positional_embedding="none")
    assert model(rng.standard_normal((1, 48, 40, 3)).astype("float32")).shape == (1, 10)


@pytest.mark.parametrize(
    "shape, dtype, error, message",
    [
        (
            (32, 32, 3),
            "float32",
            ValueError,
            r"shape \(batch, 32, 32, 3\); got an input of shape \(32, 32, 3\)\. Add a batch axis",
        ),
        ((2, 3, 32, 32), "float32", ValueError, "3 channels in the last axis.*channels-first"),
        ((2, 32, 32, 1), "float32", ValueError, "3 channels in the last axis"),
        (
            (2, 64, 64, 3),
            "float32",
            ValueError,
            "built for 32x32 images.*learnable positional embedding covers 64 tokens.*img_size=64",
        ),
        (
            (2, 32, 48, 3),
            "float32",
            ValueError,
            r"Got 32x48 images.*img_size=\(32, 48\) \(non-square sizes are accepted",
        ),
        ((2, 32, 32, 3), "uint8", TypeError, r"floating-point images; got uint8.*/ 255\.0"),
    ],
)
def test_bad_images_get_a_clear_error(small, shape, dtype, error, message):
    with pytest.raises(error, match=message):
        small(np.zeros(shape, dtype))


def test_bad_images_are_refused_by_predict_too(small):
    with pytest.raises(TypeError, match="floating-point images"):
        small.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 64, 64, 3), "built for 32x32 images"),
        ((2, 3, 32, 32), "channels-first"),
    ],
)
def test_image_checks_hold_on_every_path_after_keras_relaxed_its_traces(
    shape, message, jit_compile
):
    model = cct_fast.create_model("cct_2_3x2_32", num_classes=3, jit_compile=jit_compile)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    for batch in (2, 3, 5):  # new batch sizes: Keras relaxes its traced shapes to None
        model.predict(np.zeros((batch, 32, 32, 3), "float32"), verbose=0)
        model.evaluate(np.zeros((batch, 32, 32, 3), "float32"), np.zeros(batch), verbose=0)
    model.fit(np.zeros((4, 32, 32, 3), "float32"), np.zeros(4), batch_size=2, verbose=0)
    bad = np.zeros(shape, "float32")
    for run in (
        lambda: model(bad),
        lambda: model.predict(bad, verbose=0),
        lambda: model.fit(bad, np.zeros(2), verbose=0),
        lambda: model.evaluate(bad, np.zeros(2), verbose=0),
        lambda: model.predict(tf.data.Dataset.from_tensor_slices(bad).batch(2), verbose=0),
    ):
        with pytest.raises(ValueError, match=message):
            run()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_graph_traced_for_any_image_size_checks_the_size_when_it_runs(small, jit_compile):
    function = tf.function(
        small, input_signature=[tf.TensorSpec((None, None, None, 3))], jit_compile=jit_compile
    )
    assert function(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"\[2,64,64,3\] is not compatible with expected shape \[\?,32,32,3\]",
    ):
        function(np.zeros((2, 64, 64, 3), "float32"))


def test_no_images_give_no_rows_of_logits(small):
    empty = np.zeros((0, 32, 32, 3), "float32")
    assert np.asarray(small(empty)).shape == (0, 10)
    predicted = small.predict(empty, verbose=0)
    assert predicted.shape == (0, 10) and predicted.dtype == np.float32
    features = cct_fast.create_model("cct_2_3x2_32", include_top=False)
    assert features.predict(empty, verbose=0).shape == (0, 128)
    with pytest.raises(ValueError, match="built for 32x32 images"):
        small(np.zeros((0, 64, 64, 3), "float32"))


@pytest.mark.parametrize("given", ["images.png", b"\x89PNG", {"images": 1}, 3.0, None])
def test_what_is_not_an_array_is_named(small, given):
    with pytest.raises(
        TypeError,
        match=r"takes a batch of images: a float tensor or numpy "
        r"array of shape \(batch, 32, 32, 3\); got a",
    ):
        small(given)


def test_a_text_models_inputs_are_named_for_what_they_are(small):
    ids, mask = np.zeros((2, 64), "int32"), np.ones((2, 64), bool)
    with pytest.raises(TypeError, match=r"is an image model .*got 2 2-D arrays, as a text"):
        small((ids, mask))


def test_non_square_models_take_non_square_images_and_save(tmp_path, rng):
    model = cct_fast.create_model("cct_2_3x2_32", img_size=(32, 48))
    images = rng.standard_normal((2, 32, 48, 3)).astype("float32")
    restored = keras_model_roundtrip(model, tmp_path / "m.keras")
    assert restored.config.img_size == (32, 48)
    np.testing.assert_array_equal(np.asarray(restored(images)), np.asarray(model(images)))


def test_a_square_embedding_resizes_to_a_non_square_grid(tmp_path):
    square = cct_fast.create_model("cct_2_3x2_32")
    cct_fast.save_weights(square, tmp_path / "w.weights.h5")
    wide = cct_fast.create_model(
        "cct_2_3x2_32", img_size=(32, 64), weights=tmp_path / "w.weights.h5"
    )
    expected = tf.image.resize(
        square.positional_embedding.embedding.numpy().reshape(1, 8, 8, 128),
        (8, 16),
        method="bilinear",
        antialias=False,
    )
    np.testing.assert_allclose(
        wide.positional_embedding.embedding.numpy(), np.reshape(expected, (1, 128, 128)), rtol=1e-6
    )
