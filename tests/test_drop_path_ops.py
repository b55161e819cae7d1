"""The CPU ops that take drop path inside a residual add: ``norm1(x + drop_path(branch))`` and
the end of an encoder block ``x + drop_path(branch)``. Forward and gradients against float64 on
fresh inputs, bad input, and a custom model's training step against the fused path's with the
same draws."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.compute import custom_ops, fused
from cct_fast.core.layers import DropPath
from cct_fast.core.model import rebuild

from helpers import (
    assert_refused,
    random_images,
    relative_error,
    trained_like,
    training_step_op_types,
)

pytestmark = pytest.mark.skipif(
    not custom_ops.LIBRARY.exists(), reason=str(custom_ops.unavailable_reason())
)
EPSILON = fused.LAYER_NORM_EPSILON
KEEP = 0.7


def _in_float64(normalize):
    """x + scale[sample] * branch, then LayerNorm where ``normalize``: the definition, in
    float64."""

    def function(x, branch, scale, gamma, beta):
        factor = tf.reshape(scale, (-1,) + (1,) * (len(x.shape) - 1))
        total = x + factor * branch
        if not normalize:
            return total
        mean, variance = tf.nn.moments(total, axes=[-1], keepdims=True)
        return (total - mean) * tf.math.rsqrt(variance + EPSILON) * gamma + beta

    return function


def _op(normalize):
    if normalize:
        return lambda x, branch, scale, gamma, beta: custom_ops.drop_path_layer_norm(
            x, branch, scale, gamma, beta, EPSILON
        )
    return lambda x, branch, scale, gamma, beta: custom_ops.drop_path_add(x, branch, scale)


def _values_and_gradients(function, tensors, scale, cotangent):
    x, branch, gamma, beta = tensors
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        y = function(x, branch, scale, gamma, beta)
        loss = tf.reduce_sum(tf.cast(y, cotangent.dtype) * cotangent)
    gradients = tape.gradient(loss, tensors, unconnected_gradients="zero")
    return [tf.cast(t, tf.float64) for t in (y, *gradients)]


@pytest.mark.parametrize("normalize", [True, False], ids=["then LayerNorm", "add alone"])
@pytest.mark.parametrize(
    "shape",
    [
        (8, 64, 256),  # CCT-7/3x1's width, 8 blocks of rows
        (3, 37, 100),  # width not a multiple of the vector width, rows not of the block
        (2, 7),  # one row a sample, narrower than a vector
        (2, 3, 4, 48),  # more than one axis between the samples and the width
    ],
)
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 1e-2)])
def test_the_ops_match_float64(shape, normalize, dtype, tolerance, rng):
    x, branch = (tf.constant(rng.standard_normal(shape) * 2 + 0.5, dtype) for _ in "xb")
    gamma, beta = (tf.constant(rng.standard_normal(shape[-1]) + 1, tf.float32) for _ in "gb")
    # Dropped and kept samples both, in a random order.
    kept = rng.permutation(np.arange(shape[0]) % 2 == 0)
    scale = tf.constant(kept / KEEP, tf.float32)
    cotangent = tf.constant(rng.standard_normal(shape), tf.float64)

    actual = _values_and_gradients(_op(normalize), [x, branch, gamma, beta], scale, cotangent)
    as64 = [tf.cast(t, tf.float64) for t in (x, branch, gamma, beta)]
    expected = _values_and_gradients(
        _in_float64(normalize), as64, tf.cast(scale, tf.float64), cotangent
    )
    names = ["y", "grad x", "grad branch", "grad gamma", "grad beta"]
    for name, value, reference in zip(names, actual, expected, strict=True):
        if not normalize and name in ("grad gamma", "grad beta"):
            continue
        assert relative_error(value, reference) <= tolerance, name
    # A dropped sample's branch takes no gradient; a kept one's is scaled by 1 / keep.
    assert not np.any(actual[2].numpy()[~kept])
    assert np.any(actual[2].numpy()[kept])


def test_the_layer_norm_gradient_is_the_numeric_one(rng):
    x, branch = (tf.constant(rng.standard_normal((3, 2, 6)), tf.float64) for _ in "xb")
    gamma, beta = (tf.constant(rng.standard_normal(6), tf.float64) for _ in "gb")
    scale = tf.constant([1 / KEEP, 0.0, 1 / KEEP], tf.float32)

    def norm(x, branch, gamma, beta):
        as32 = [tf.cast(t, tf.float32) for t in (x, branch, gamma, beta)]
        y = custom_ops.drop_path_layer_norm(as32[0], as32[1], scale, as32[2], as32[3], EPSILON)
        return tf.cast(y, tf.float64)

    theoretical, numeric = tf.test.compute_gradient(norm, [x, branch, gamma, beta], delta=1e-2)
    for t, n in zip(theoretical, numeric, strict=True):
        np.testing.assert_allclose(t, n, atol=3e-3)


_BAD_INPUTS = [
    (
        lambda x: custom_ops.drop_path_add(x, x, tf.ones(3)),
        r"scale must be \(batch\) = \(2\), one factor a sample, got shape \[3\]",
    ),
    (
        lambda x: custom_ops.drop_path_add(x[:1], x, tf.ones(2)),
        r"x must have the branch's shape \[2,3,4\], got \[1,3,4\]",
    ),
    (
        lambda x: custom_ops.drop_path_add(x[0, 0], x[0, 0], tf.ones(4)),
        r"branch must be \(batch, \.\.\., width >= 1\), got shape \[4\]",
    ),
    (
        lambda x: custom_ops.drop_path_layer_norm(x, x, tf.ones(2), tf.ones(5), tf.zeros(5), 1e-5),
        r"input 3 of CctDropPathLayerNorm must be \[4\], got \[5\]",
    ),
    (
        lambda x: custom_ops.drop_path_layer_norm(x, x, tf.ones(1), tf.ones(4), tf.zeros(4), 1e-5),
        r"scale must be \(batch\) = \(2\), one factor a sample, got shape \[1\]",
    ),
]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph of unknown shapes"])
@pytest.mark.parametrize("call, message", _BAD_INPUTS)
def test_bad_input_gets_the_ops_own_message(call, message, graph):
    assert_refused(call, tf.zeros((2, 3, 4)), message, graph)


def _drop_paths(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, DropPath)]


def test_a_custom_training_step_computes_the_fused_ones_with_the_same_draws(rng):
    """Stochastic depth only (no other dropout), the custom model's seed generators set to the
    fused model's states: the same samples are dropped, so logits and gradients agree."""
    fast = cct_fast.create_model(
        "cct_2_3x2_32",
        implementation="fused",
        dropout=0.0,
        attention_dropout=0.0,
        stochastic_depth=0.5,
    )
    trained_like(fast, rng)
    custom = rebuild(fast, implementation="custom")
    for source, target in zip(_drop_paths(fast), _drop_paths(custom), strict=True):
        target.seed_generator.state.assign(source.seed_generator.state)
    images = tf.constant(random_images(rng, fast, batch=8))
    labels = rng.integers(0, fast.config.num_classes, 8)

    def logits_and_gradients(model):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return logits, tape.gradient(loss, [v.value for v in model.trainable_variables])

    (expected, expected_gradients), (actual, gradients) = map(logits_and_gradients, (fast, custom))
    # The draw dropped something: training-mode logits are not the inference ones.
    assert relative_error(expected, fast(images, training=False)) > 0.05
    assert relative_error(actual, expected) <= 1e-5
    # Gradients that are zero up to rounding (the pooling's bias: its softmax ignores a shift)
    # have no relative error to speak of.
    largest = max(float(np.abs(g).max()) for g in expected_gradients)
    pairs = zip(custom.trainable_variables, gradients, expected_gradients, strict=True)
    for variable, value, reference in pairs:
        if np.abs(reference).max() >= 1e-5 * largest:
            assert relative_error(value, reference) <= 1e-4, variable.path


def test_the_ops_run_where_the_layers_drop_path_is_active(rng):
    """cct_2's drop path rates rise from 0 to the stochastic depth over its two layers: the
    second layer's residual adds take the ops in training, and inference takes none."""
    model = cct_fast.create_model("cct_2_3x2_32", implementation="custom", stochastic_depth=0.1)
    images = tf.constant(rng.standard_normal((2, 32, 32, 3)), tf.float32)
    types = training_step_op_types(model, images)
    assert types.count("CctDropPathLayerNorm") == 1
    assert types.count("CctDropPathLayerNormGrad") == 1
    # Forward, then the branch's gradient.
    assert types.count("CctDropPathAdd") == 2
    assert types.count("CctLayerNorm") == 2 * 2 + 1 - 1
    inference = tf.function(lambda x: model(x, training=False)).get_concrete_function(images)
    inference_types = [op.type for op in inference.graph.get_operations()]
    assert not [t for t in inference_types if t.startswith("CctDropPath")]
