"""Checks shared by the layer and model tests."""

import keras
import numpy as np


def run_layer_test(layer, inputs, expected_shape, stochastic_in_training=False):
    """Output shape, a get_config/from_config round trip that computes the same thing, and
    training-mode behaviour (random when ``stochastic_in_training``, else as in inference)."""
    outputs = np.asarray(layer(inputs))
    assert outputs.shape == expected_shape

    clone = layer.__class__.from_config(layer.get_config())
    clone.build(inputs.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(inputs)), outputs, rtol=1e-6, atol=1e-6)

    trained = [np.asarray(layer(inputs, training=True)) for _ in range(2)]
    if stochastic_in_training:
        assert not np.allclose(trained[0], trained[1])
    else:
        np.testing.assert_allclose(trained[0], outputs, rtol=1e-6, atol=1e-6)
    return outputs


def randomize(model, rng):
    """Random weights with LayerNorm scales and biases off their initial 1 / 0."""
    for variable in model.weights:
        shape = tuple(variable.shape)
        values = rng.standard_normal(shape) * (0.1 if len(shape) < 2 else 0.05)
        if variable.path.endswith("gamma"):
            values += 1.0
        variable.assign(values.astype(variable.dtype))
    return model


def relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


def assert_same_weights(model_a, model_b):
    weights_a = {v.path.split("/", 1)[1]: v.numpy() for v in model_a.weights}
    weights_b = {v.path.split("/", 1)[1]: v.numpy() for v in model_b.weights}
    assert weights_a.keys() == weights_b.keys()
    for path, value in weights_a.items():
        np.testing.assert_array_equal(value, weights_b[path], err_msg=path)


def random_images(rng, model, batch=2, dtype="float32"):
    config = model.config
    shape = (batch, *config.image_size, config.n_input_channels)
    return rng.standard_normal(shape).astype(dtype)


def keras_model_roundtrip(model, path):
    model.save(path)
    return keras.models.load_model(path)
