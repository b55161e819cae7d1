"""The custom (residual +) LayerNorm op: forward and gradients against the fused path, odd
shapes, bfloat16, numeric gradients, bad input, and its place in a custom model's graph."""

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.compute import custom_ops, fused

from helpers import assert_refused, relative_error, training_step_op_types

pytestmark = pytest.mark.skipif(
    not custom_ops.LIBRARY.exists(), reason=str(custom_ops.unavailable_reason())
)
EPSILON = fused.LAYER_NORM_EPSILON


def _values_and_gradients(function, tensors, cotangent):
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        y = function(*tensors)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    return [y, *tape.gradient(loss, tensors)]


@pytest.mark.parametrize("residual", [True, False], ids=["x + residual", "x alone"])
@pytest.mark.parametrize(
    "shape",
    [
        (64, 256, 256),  # CCT-7/3x1 at batch 64: many blocks of rows
        (3, 37, 100),  # width not a multiple of the vector width, rows not of the block
        (1, 7),  # one row, narrower than a vector
        (2, 3, 4, 48),  # more than one leading axis
    ],
)
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 1e-2)])
def test_layer_norm_matches_the_fused_path(shape, residual, dtype, tolerance, rng):
    def tensor(shape, scale=1.0, dtype=dtype):
        return tf.constant(rng.standard_normal(shape) * scale + 0.5, dtype)

    x, r = tensor(shape, 3.0), tensor(shape)
    gamma, beta = tensor(shape[-1:], dtype="float32"), tensor(shape[-1:], dtype="float32")
    cotangent = tensor(shape, dtype="float32")
    if residual:
        actual = _values_and_gradients(
            lambda x, r, g, b: custom_ops.layer_norm(x, g, b, EPSILON, residual=r),
            [x, r, gamma, beta],
            cotangent,
        )
        expected = _values_and_gradients(fused.residual_layer_norm, [x, r, gamma, beta], cotangent)
    else:
        actual = _values_and_gradients(
            lambda x, g, b: custom_ops.layer_norm(x, g, b, EPSILON), [x, gamma, beta], cotangent
        )
        expected = _values_and_gradients(fused.layer_norm, [x, gamma, beta], cotangent)
    assert actual[0].dtype == dtype
    for value, reference in zip(actual, expected, strict=True):
        assert (
            relative_error(tf.cast(value, tf.float32), tf.cast(reference, tf.float32)) <= tolerance
        )


def test_layer_norm_gradient_is_the_numeric_one(rng):
    x, r = (tf.constant(rng.standard_normal((3, 6)), tf.float64) for _ in "xr")
    gamma, beta = (tf.constant(rng.standard_normal(6), tf.float64) for _ in "gb")

    def norm(x, r, gamma, beta):
        as32 = [tf.cast(t, tf.float32) for t in (x, r, gamma, beta)]
        out = custom_ops.layer_norm(as32[0], as32[2], as32[3], EPSILON, residual=as32[1])
        return tf.cast(out, tf.float64)

    theoretical, numeric = tf.test.compute_gradient(norm, [x, r, gamma, beta], delta=1e-2)
    for t, n in zip(theoretical, numeric, strict=True):
        np.testing.assert_allclose(t, n, atol=3e-3)


_BAD_INPUTS = [
    (
        lambda x: custom_ops.layer_norm(x, tf.ones(5), tf.zeros(5), EPSILON),
        r"input 1 of CctLayerNorm must be \[4\], got \[5\]",
    ),
    (
        lambda x: custom_ops.layer_norm(x, tf.ones(4), tf.zeros(4), EPSILON, residual=x[:1]),
        r"residual must have x's shape \[2,3,4\], got \[1,3,4\]",
    ),
]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph of unknown shapes"])
@pytest.mark.parametrize("call, message", _BAD_INPUTS)
def test_bad_input_gets_the_ops_own_message(call, message, graph):
    assert_refused(call, tf.zeros((2, 3, 4)), message, graph)


def test_an_empty_width_is_refused():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"x must be \(\.\.\., width >= 1\)"):
        custom_ops.layer_norm(tf.zeros((2, 0)), tf.ones(0), tf.zeros(0), EPSILON)


def test_a_custom_model_runs_its_layer_norms_in_the_op_on_the_cpu(rng):
    """Two per encoder layer (pre_norm; norm1 with the attention's residual) and the final
    norm, forward and backward. With a dropout after the projections: without one, norm1 is the
    residual op that also adds proj's bias (test_drop_path_ops.py)."""
    model = cct_fast.create_model(
        "cct_2_3x2_32", implementation="custom", stochastic_depth=0.0, dropout=0.1
    )
    images = tf.constant(rng.standard_normal((2, 32, 32, 3)), tf.float32)
    types = training_step_op_types(model, images)
    assert types.count("CctLayerNorm") == 2 * 2 + 1
    assert types.count("CctLayerNormGrad") == 2 * 2 + 1
