"""The custom bias + exact GELU op: forward and gradients against float64 erf, the tails, the
fused path's XLA cluster, bad input, and its place in a custom model's graph."""

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.compute import custom_ops, fused

from helpers import assert_refused, relative_error, training_step_op_types

pytestmark = pytest.mark.skipif(
    not custom_ops.LIBRARY.exists(), reason=str(custom_ops.unavailable_reason())
)


def _gelu64(x, bias):
    s = tf.cast(x, tf.float64) + tf.cast(bias, tf.float64)
    return 0.5 * s * (1.0 + tf.math.erf(s / np.sqrt(2.0)))


def _values_and_gradients(function, x, bias, cotangent):
    with tf.GradientTape() as tape:
        tape.watch([x, bias])
        y = function(x, bias)
        loss = tf.reduce_sum(tf.cast(y, tf.float64) * cotangent)
    return [y, *tape.gradient(loss, [x, bias])]


@pytest.mark.parametrize(
    "shape",
    [
        (8 * 196, 1152),  # CCT-14's linear1 at batch 8: many blocks of rows
        (3, 37, 100),  # width not a multiple of the vector group, rows not of the block
        (1, 5),  # one row, narrower than a vector
    ],
)
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("bfloat16", 1e-2)])
def test_bias_gelu_matches_float64_erf(shape, dtype, tolerance, rng):
    x = tf.constant(rng.standard_normal(shape) * 3.0, dtype)
    bias = tf.constant(rng.standard_normal(shape[-1:]), tf.float32)
    cotangent = tf.constant(rng.standard_normal(shape), tf.float64)
    actual = _values_and_gradients(custom_ops.bias_gelu, x, bias, cotangent)
    # The reference differentiates float64 erf at the same (rounded) inputs.
    expected = _values_and_gradients(
        _gelu64, tf.cast(x, tf.float64), tf.cast(bias, tf.float64), cotangent
    )
    assert actual[0].dtype == dtype and actual[2].dtype == tf.float32
    for value, reference in zip(actual, expected, strict=True):
        assert relative_error(tf.cast(value, tf.float64), reference) <= tolerance


def test_bias_gelu_is_close_everywhere_in_the_tails():
    """Absolute error within a few float32 units of |s| from -12 to 12 (1 + erf cancels for
    very negative s, as in every float32 erf GELU; the values there are below 1e-7)."""
    s = tf.constant(np.linspace(-12.0, 12.0, 9601, dtype=np.float32)[None])
    bias = tf.zeros(9601)
    with tf.GradientTape() as tape:
        tape.watch(s)
        y = custom_ops.bias_gelu(s, bias)
    slope = tape.gradient(y, s)
    s64 = tf.cast(s, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(s64)
        exact = _gelu64(s64, 0.0)
    exact_slope = tape.gradient(exact, s64)
    scale = np.maximum(1.0, np.abs(s64.numpy()))
    assert np.max(np.abs(y.numpy() - exact.numpy()) / scale) < 1e-6
    assert np.max(np.abs(slope.numpy() - exact_slope.numpy()) / scale) < 1e-6


def test_bias_gelu_agrees_with_the_fused_path(rng):
    x = tf.constant(rng.standard_normal((64, 48)), tf.bfloat16)
    bias = tf.constant(rng.standard_normal(48), tf.float32)
    custom = tf.cast(custom_ops.bias_gelu(x, bias), tf.float32)
    assert relative_error(custom, tf.cast(fused.bias_gelu(x, bias), tf.float32)) <= 1e-2


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph of unknown shapes"])
def test_a_bias_of_another_width_gets_the_ops_own_message(graph):
    def call(x):
        return custom_ops.bias_gelu(x, tf.zeros(5))

    message = r"expects x of shape \(\.\.\., width\) and a bias of shape \(width\), got x \[2,3,4\]"
    assert_refused(call, tf.zeros((2, 3, 4)), message, graph)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph of unknown shapes"])
def test_a_gradient_of_another_shape_gets_the_ops_own_message(graph):
    def call(grad_y):
        return custom_ops.ops().cct_bias_gelu_grad(tf.zeros((2, 3, 4)), tf.zeros(4), grad_y)

    message = r"CctBiasGeluGrad expects grad_y of x's shape \[2,3,4\], got \[2,3,5\]"
    assert_refused(call, tf.zeros((2, 3, 5)), message, graph)


def test_float16_is_not_a_cpu_dtype_of_the_op():
    with pytest.raises(tf.errors.InvalidArgumentError, match="half is not in the list of allowed"):
        custom_ops.bias_gelu(tf.zeros((2, 4), tf.float16), tf.zeros(4))


def test_a_custom_model_runs_its_mlp_activations_in_the_op_on_the_cpu(rng):
    """One per encoder layer, forward and backward."""
    model = cct_fast.create_model("cct_2_3x2_32", implementation="custom")
    images = tf.constant(rng.standard_normal((2, 32, 32, 3)), tf.float32)
    types = training_step_op_types(model, images)
    assert types.count("CctBiasGelu") == 2
    assert types.count("CctBiasGeluGrad") == 2
