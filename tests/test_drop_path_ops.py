"""The CPU ops that take drop path and the branch's bias inside a residual add:
``norm1(x + drop_path(branch + bias))`` and the end of an encoder block
``x + drop_path(branch + bias)``. Forward and gradients against float64 on fresh inputs, bad
input, a custom model's training step against the fused path's with the same draws, and the
bias gradients of a bfloat16 step against float32's."""

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
    """x + scale[sample] * (branch + bias), then LayerNorm where ``normalize``: the definition,
    in float64."""

    def function(x, branch, scale, gamma, beta, bias):
        factor = tf.reshape(scale, (-1,) + (1,) * (len(x.shape) - 1))
        total = x + factor * (branch if bias is None else branch + bias)
        if not normalize:
            return total
        mean, variance = tf.nn.moments(total, axes=[-1], keepdims=True)
        return (total - mean) * tf.math.rsqrt(variance + EPSILON) * gamma + beta

    return function


def _op(normalize):
    if normalize:
        return lambda x, branch, scale, gamma, beta, bias: custom_ops.drop_path_layer_norm(
            x, branch, scale, gamma, beta, EPSILON, bias
        )
    return lambda x, branch, scale, gamma, beta, bias: custom_ops.drop_path_add(
        x, branch, scale, bias
    )


def _values_and_gradients(function, tensors, scale, cotangent):
    """y and the gradients of every tensor (x, branch, gamma, beta, and the bias where it is
    not None)."""
    watched = [t for t in tensors if t is not None]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        y = function(*tensors[:2], scale, *tensors[2:])
        loss = tf.reduce_sum(tf.cast(y, cotangent.dtype) * cotangent)
    gradients = tape.gradient(loss, watched, unconnected_gradients="zero")
    return [tf.cast(t, tf.float64) for t in (y, *gradients)]


@pytest.mark.parametrize("with_bias", [True, False], ids=["with bias", "no bias"])
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
def test_the_ops_match_float64(shape, normalize, with_bias, dtype, tolerance, rng):
    x, branch = (tf.constant(rng.standard_normal(shape) * 2 + 0.5, dtype) for _ in "xb")
    gamma, beta = (tf.constant(rng.standard_normal(shape[-1]) + 1, tf.float32) for _ in "gb")
    bias = tf.constant(rng.standard_normal(shape[-1]) + 2, tf.float32) if with_bias else None
    # Dropped and kept samples both, in a random order.
    kept = rng.permutation(np.arange(shape[0]) % 2 == 0)
    scale = tf.constant(kept / KEEP, tf.float32)
    cotangent = tf.constant(rng.standard_normal(shape), tf.float64)

    tensors = [x, branch, gamma, beta, bias]
    actual = _values_and_gradients(_op(normalize), tensors, scale, cotangent)
    as64 = [None if t is None else tf.cast(t, tf.float64) for t in tensors]
    expected = _values_and_gradients(
        _in_float64(normalize), as64, tf.cast(scale, tf.float64), cotangent
    )
    names = ["y", "grad x", "grad branch", "grad gamma", "grad beta", "grad bias"]
    assert len(actual) == len(expected) == 5 + with_bias
    for name, value, reference in zip(names, actual, expected, strict=False):
        if not normalize and name in ("grad gamma", "grad beta"):
            continue
        assert relative_error(value, reference) <= tolerance, name
    # A dropped sample's branch takes no gradient; a kept one's is scaled by 1 / keep.
    assert not np.any(actual[2].numpy()[~kept])
    assert np.any(actual[2].numpy()[kept])


def test_the_layer_norm_gradient_is_the_numeric_one(rng):
    x, branch = (tf.constant(rng.standard_normal((3, 2, 6)), tf.float64) for _ in "xb")
    gamma, beta, bias = (tf.constant(rng.standard_normal(6), tf.float64) for _ in "gbb")
    scale = tf.constant([1 / KEEP, 0.0, 1 / KEEP], tf.float32)

    def norm(*tensors):
        x, branch, gamma, beta, bias = (tf.cast(t, tf.float32) for t in tensors)
        y = custom_ops.drop_path_layer_norm(x, branch, scale, gamma, beta, EPSILON, bias)
        return tf.cast(y, tf.float64)

    inputs = [x, branch, gamma, beta, bias]
    theoretical, numeric = tf.test.compute_gradient(norm, inputs, delta=1e-2)
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
    (
        lambda x: custom_ops.drop_path_add(x, x, tf.ones(2), bias=tf.ones(5)),
        r"bias must be \(width\) = \(4\), got shape \[5\]",
    ),
    (
        lambda x: custom_ops.drop_path_layer_norm(
            x, x, tf.ones(2), tf.ones(4), tf.zeros(4), 1e-5, bias=tf.ones(3)
        ),
        r"bias must be \(width\) = \(4\), got shape \[3\]",
    ),
]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph of unknown shapes"])
@pytest.mark.parametrize("call, message", _BAD_INPUTS)
def test_bad_input_gets_the_ops_own_message(call, message, graph):
    assert_refused(call, tf.zeros((2, 3, 4)), message, graph)


def _drop_paths(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, DropPath)]


def _logits_and_gradients(model, images, labels):
    """A training-mode forward pass and the gradients of the loss for each variable."""
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return logits, tape.gradient(loss, [v.value for v in model.trainable_variables])


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

    (expected, expected_gradients), (actual, gradients) = (
        _logits_and_gradients(model, images, labels) for model in (fast, custom)
    )
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


def _residual_ops(function, images):
    """(op type, whether it adds a bias) of each residual op in ``function``'s graph."""
    graph = tf.function(function).get_concrete_function(images).graph
    return [
        (op.type, op.get_attr("M") == 1)
        for op in graph.get_operations()
        if op.type in ("CctDropPathLayerNorm", "CctDropPathAdd")
    ]


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_the_residual_adds_take_proj_and_linear2_biases_into_the_ops(training, rng):
    """Without dropout after the projections (the official models' default), each block's two
    residual adds are the ops with the bias: in inference (factor 1) and in training, where the
    first block's drop path rate is 0 and the second's is not."""
    model = cct_fast.create_model("cct_2_3x2_32", implementation="custom", stochastic_depth=0.1)
    images = tf.constant(rng.standard_normal((2, 32, 32, 3)), tf.float32)
    ops = _residual_ops(lambda x: model(x, training=training), images)
    assert ops == [("CctDropPathLayerNorm", True), ("CctDropPathAdd", True)] * 2
    # The pre-norms and the final norm stay the plain LayerNorm op.
    types = training_step_op_types(model, images)
    assert types.count("CctLayerNorm") == 2 + 1
    assert types.count("CctDropPathLayerNormGrad") == 2
    assert types.count("CctDropPathAddGrad") == 2


def test_a_dropout_after_the_projections_keeps_their_biases(rng):
    """dropout(proj(x) + bias) is not dropout(proj(x)) + bias: with that dropout active the
    biases stay in the GEMMs, and only the drop path goes into the ops."""
    model = cct_fast.create_model(
        "cct_2_3x2_32", implementation="custom", stochastic_depth=0.1, dropout=0.1
    )
    images = tf.constant(rng.standard_normal((2, 32, 32, 3)), tf.float32)
    ops = _residual_ops(lambda x: model(x, training=True), images)
    assert ops == [("CctDropPathLayerNorm", False), ("CctDropPathAdd", False)]
    # In inference the dropout is idle: the biases go into the ops.
    ops = _residual_ops(lambda x: model(x, training=False), images)
    assert ops == [("CctDropPathLayerNorm", True), ("CctDropPathAdd", True)] * 2


def test_a_bfloat16_step_sums_the_bias_gradients_in_float32(rng):
    """The ops sum the bias gradients of proj and linear2 in float32 from float32 values:
    within 2 % of the float32 model's. The fused path's, which TensorFlow sums from the
    bfloat16 gradient of the GEMM's output, were measured 4-17 % off on these weights."""
    # No random draws: both models compute the same function.
    exact = cct_fast.create_model(
        "cct_2_3x2_32", implementation="fused", attention_dropout=0.0, stochastic_depth=0.0
    )
    trained_like(exact, rng)
    custom = rebuild(exact, implementation="custom", policy="mixed_bfloat16")
    images = tf.constant(random_images(rng, exact, batch=8))
    labels = rng.integers(0, exact.config.num_classes, 8)

    (_, gradients), (_, exact_gradients) = (
        _logits_and_gradients(model, images, labels) for model in (custom, exact)
    )
    pairs = zip(exact.trainable_variables, gradients, exact_gradients, strict=True)
    checked = [
        (variable.path, relative_error(gradient, exact_gradient))
        for variable, gradient, exact_gradient in pairs
        if variable.path.endswith(("proj/bias", "linear2/bias"))
    ]
    assert len(checked) == 4
    for path, error in checked:
        assert error <= 0.02, path
