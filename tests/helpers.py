"""Checks shared by the layer and model tests, and the runs' interruption."""

import contextlib
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cct_fast.base.compare import relative_error  # noqa: F401 (the suite imports it here)


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


def cpu_flags():
    """The instruction-set flags of this CPU, as Linux lists them (avx2, avx512f, ...)."""
    match = re.search(r"^flags\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return set(match.group(1).split())


def fixed_dropout(keep, mask):
    """A dropout for the reference attention that drops what ``mask`` (batch, heads, queries,
    keys) drops and scales the rest by 1 / ``keep``: the custom op's Philox draw, given."""
    factors = np.asarray(mask, np.float64) / np.float64(np.float32(keep))

    def dropout(weights, training=True):
        return weights * tf.cast(factors, weights.dtype)

    return dropout


def trained_like(model, rng):
    """Draw every trainable weight afresh at the scales of a trained model (as
    ``official.trained_like`` does for the PyTorch model): He-scaled convolutions,
    1/sqrt(fan_in) dense kernels, embeddings of std 0.5, LayerNorm scales around 1, shifts and
    biases off zero. Attention is then far from uniform and LayerNorm inputs have variances
    near 1."""
    for variable in model.trainable_weights:
        shape = tuple(variable.shape)
        if len(shape) == 4:  # convolution (kh, kw, in, out), before a ReLU
            std, mean = (2.0 / np.prod(shape[:-1])) ** 0.5, 0.0
        elif len(shape) == 2:  # dense (in, out)
            std, mean = shape[0] ** -0.5, 0.0
        elif len(shape) == 3:  # positional embedding or class token
            std, mean = 0.5, 0.0
        else:
            std, mean = 0.2, (1.0 if variable.path.endswith("gamma") else 0.0)
        variable.assign((mean + std * rng.standard_normal(shape)).astype(variable.dtype))
    return model


def assert_same_weights(model_a, model_b):
    weights_a = {v.path.split("/", 1)[1]: v.numpy() for v in model_a.weights}
    weights_b = {v.path.split("/", 1)[1]: v.numpy() for v in model_b.weights}
    assert weights_a.keys() == weights_b.keys()
    for path, value in weights_a.items():
        np.testing.assert_array_equal(value, weights_b[path], err_msg=path)


def assert_refused(call, x, message, graph, errors=tf.errors.InvalidArgumentError):
    """``call(x)`` fails with ``message``: eager, or (``graph``) traced with no static shape, so
    that the kernel's own check answers where the shape function could not."""
    if graph:
        call = tf.function(call, input_signature=[tf.TensorSpec(None, x.dtype)], autograph=False)
    with pytest.raises(errors, match=message):
        call(x)


def training_step_op_types(model, images):
    """The op types in the graph of one training step of ``model`` on ``images``: the
    forward pass and the gradients of its variables."""

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    graph = tf.function(step).get_concrete_function(images).graph
    return [op.type for op in graph.get_operations()]


def random_images(rng, model, batch=2, dtype="float32"):
    config = model.config
    shape = (batch, *config.image_size, config.n_input_channels)
    return rng.standard_normal(shape).astype(dtype)


def keras_model_roundtrip(model, path):
    model.save(path)
    return keras.models.load_model(path)


def write_flowers_files(root, rng):
    """Oxford Flowers-102's layout at a small scale: 12 jpgs of 3 classes, labels 1-based,
    split ids 1-based."""
    from scipy.io import savemat

    (root / "jpg").mkdir(parents=True)
    for n in range(1, 13):
        image = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
        (root / "jpg" / f"image_{n:05d}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
    labels = np.array([[1, 1, 1, 1, 2, 2, 2, 2, 102, 102, 102, 102]])
    savemat(root / "imagelabels.mat", {"labels": labels})
    savemat(
        root / "setid.mat",
        {"trnid": [[1, 5, 9]], "valid": [[2, 6, 10]], "tstid": [[3, 4, 7, 8, 11, 12]]},
    )
    return root


@contextlib.contextmanager
def interrupted_at_epoch(epoch):
    """Training runs started in the block stop as Ctrl-C stops them, when epoch ``epoch``
    (0-based) begins."""
    from cct_fast import train

    original = train.Run._reseed

    def interrupting(self, started):
        if started == epoch:
            raise KeyboardInterrupt
        original(self, started)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train.Run, "_reseed", interrupting)
        yield


_TOPICS = {
    "animals": ["cat", "dog", "horse", "cow", "sheep", "goat"],
    "weather": ["rain", "snow", "storm", "wind", "cloud", "sun"],
    "sport": ["goal", "match", "team", "score", "coach", "league"],
}
_FILLER = ["the", "a", "today", "we", "saw", "some", "and", "then", "more"]
# A corpus that text_cct_2 learns in a few epochs: each text names three words of its topic.
QUICK_TEXT = dict(model="text_cct_2", seq_len=16, epochs=3, batch_size=16, warmup_epochs=1, lr=2e-3)


def topic_csv(path, per_topic=40, seed=0):
    """A CSV of three topics, ``per_topic`` texts each; returns its dataset name."""
    rng = np.random.default_rng(seed)
    lines = ["text,label"]
    for topic, words in _TOPICS.items():
        for _ in range(per_topic):
            chosen = list(rng.choice(words, 3)) + list(rng.choice(_FILLER, 4))
            lines.append(f"{' '.join(rng.permutation(chosen))},{topic}")
    path.write_text("\n".join(lines) + "\n")
    return f"csv:{path}"
