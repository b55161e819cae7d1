"""Attention dropout inside the custom attention op: the Philox mask, its keep rate, the same
mask forward and backward, and training through the op."""

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.compute import custom_ops, reference
from cct_fast.testing.philox import dropout_mask, philox

from helpers import fixed_dropout, relative_error

pytestmark = pytest.mark.skipif(
    not custom_ops.LIBRARY.exists(), reason=str(custom_ops.unavailable_reason())
)
RATE = 0.1
KEEP = float(np.float32(1.0) - np.float32(RATE))  # as the op computes it
SEED = (20261126, -7)


def test_philox_gives_the_published_known_answers():
    """Random123's known-answer vectors for philox4x32_10."""
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for counter, key, expected in cases:
        assert tuple(philox(np.array([counter], np.uint32), key)[0]) == expected


def _identity_values(rng, batch, tokens, heads, head_dim):
    """qkv with random q and k, and v the identity (padded to head_dim) in every head, so
    that the output row of query i is its dropped-out probabilities."""
    assert head_dim >= tokens
    qkv = rng.standard_normal((batch, tokens, 3, heads, head_dim)).astype(np.float32)
    qkv[:, :, 2] = 0.0
    for j in range(tokens):
        qkv[:, j, 2, :, j] = 1.0
    return qkv.reshape(batch, tokens, -1)


def _dropped_probabilities(qkv, heads, seed, rate=RATE):
    batch, tokens = qkv.shape[:2]
    out = custom_ops.attention(tf.constant(qkv), heads, 0.3, dropout_rate=rate, seed=seed)
    out = np.asarray(out).reshape(batch, tokens, heads, -1)[..., :tokens]
    return out.transpose(0, 2, 1, 3)  # (batch, heads, queries, keys)


@pytest.mark.parametrize("tokens, head_dim", [(37, 40), (64, 64)])
def test_the_kernel_drops_exactly_the_philox_mask(tokens, head_dim, rng):
    qkv = _identity_values(rng, 2, tokens, 3, head_dim)
    dropped = _dropped_probabilities(qkv, 3, SEED)
    mask = dropout_mask(2, 3, tokens, KEEP, SEED)
    np.testing.assert_array_equal(dropped > 0, mask)
    q, k = (
        qkv.reshape(2, tokens, 3, 3, head_dim)[:, :, part].transpose(0, 2, 1, 3) for part in (0, 1)
    )
    scores = 0.3 * q @ k.transpose(0, 1, 3, 2)
    probabilities = np.exp(scores - scores.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    assert relative_error(dropped, probabilities * mask / KEEP) <= 1e-5


def test_the_keep_rate_over_16_7_million_draws(rng):
    """CCT-7/3x1's attention at batch 64 draws 16.7 M; the kept share must be 0.9 within 4
    standard deviations, and another seed must draw another mask."""
    qkv = _identity_values(rng, 1024, 64, 4, 64)  # 1024 x 4 x 64 x 64 = 16.7 M draws
    kept = _dropped_probabilities(qkv, 4, SEED) > 0
    draws = kept.size
    assert draws == 16_777_216
    sigma = (KEEP * (1 - KEEP) / draws) ** 0.5
    assert abs(kept.mean() - KEEP) <= 4 * sigma
    other = _dropped_probabilities(qkv[:64], 4, (SEED[0] + 1, SEED[1])) > 0
    agreement = (other == kept[:64]).mean()
    assert agreement == pytest.approx(KEEP**2 + (1 - KEEP) ** 2, abs=0.01)  # independent masks


@pytest.mark.parametrize(
    "batch, tokens, heads, head_dim",
    [(2, 256, 4, 64), (2, 37, 3, 128), (1, 65, 2, 20), (3, 1, 2, 32)],
)
def test_gradients_given_the_mask_equal_the_reference(batch, tokens, heads, head_dim, rng):
    qkv = tf.constant(rng.standard_normal((batch, tokens, 3 * heads * head_dim)), tf.float32)
    cotangent = tf.constant(rng.standard_normal((batch, tokens, heads * head_dim)), tf.float32)
    scale = head_dim**-0.5
    fixed = fixed_dropout(KEEP, dropout_mask(batch, heads, tokens, KEEP, SEED))

    def value_and_gradient(function):
        with tf.GradientTape() as tape:
            tape.watch(qkv)
            out = function(qkv)
            loss = tf.reduce_sum(out * cotangent)
        return out, tape.gradient(loss, qkv)

    out, grad = value_and_gradient(
        lambda x: custom_ops.attention(x, heads, scale, dropout_rate=RATE, seed=SEED)
    )
    expected, expected_grad = value_and_gradient(
        lambda x: reference.attention(x, heads, scale, dropout=fixed)
    )
    assert relative_error(out, expected) <= 1e-5
    assert relative_error(grad, expected_grad) <= 1e-5


# 64 tokens: one block of queries; 65: two, the second of one query, and an odd key count.
@pytest.mark.parametrize("tokens", [64, 65])
def test_bfloat16_dropout_draws_the_same_mask_forward_and_backward(tokens, rng):
    shape = (2, tokens, 3 * 2 * 64)
    qkv = tf.constant(rng.standard_normal(shape), tf.bfloat16)
    cotangent = tf.constant(rng.standard_normal((2, tokens, 2 * 64)), tf.bfloat16)
    fixed = fixed_dropout(KEEP, dropout_mask(2, 2, tokens, KEEP, SEED))

    def value_and_gradient(function, dtype):
        x = tf.cast(qkv, dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = function(x)
            loss = tf.reduce_sum(tf.cast(out, tf.float32) * tf.cast(cotangent, tf.float32))
        return tf.cast(out, tf.float32), tf.cast(tape.gradient(loss, x), tf.float32)

    out, grad = value_and_gradient(
        lambda x: custom_ops.attention(x, 2, 0.125, dropout_rate=RATE, seed=SEED), tf.bfloat16
    )
    expected, expected_grad = value_and_gradient(
        lambda x: reference.attention(x, 2, 0.125, dropout=fixed), tf.float32
    )
    assert relative_error(out, expected) <= 1e-2
    assert relative_error(grad, expected_grad) <= 1e-2


def test_a_dropout_rate_needs_a_seed_and_a_rate_below_one():
    qkv = tf.zeros((1, 4, 12))
    with pytest.raises(ValueError, match="needs a seed"):
        custom_ops.attention(qkv, 2, 1.0, dropout_rate=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"dropout_rate must be in \[0, 1\)"):
        custom_ops.attention(qkv, 2, 1.0, dropout_rate=1.0, seed=(1, 2))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"seed must be two int32 words"):
        custom_ops.attention(qkv, 2, 1.0, dropout_rate=0.1, seed=(1, 2, 3))


def test_training_runs_the_op_and_holds_no_score_matrix(rng):
    """At the official defaults (attention dropout 0.1) a custom model's training step runs
    the op, and no (batch, heads, tokens, tokens) tensor exists in its graph."""
    # No stochastic depth: the attention's masks are then the step's only randomness.
    model = cct_fast.create_model("cct_2_3x2_32", implementation="custom", stochastic_depth=0.0)
    batch, heads, tokens = 4, 2, model.config.sequence_length
    images = tf.constant(rng.standard_normal((batch, 32, 32, 3)), tf.float32)

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    graph = tf.function(step).get_concrete_function(images).graph
    assert "CctAttention" in {op.type for op in graph.get_operations()}
    assert "CctAttentionGrad" in {op.type for op in graph.get_operations()}
    shapes = {tuple(t.shape) for op in graph.get_operations() for t in op.outputs}
    assert (batch, heads, tokens, tokens) not in shapes
    qkv = [i for i, v in enumerate(model.trainable_variables) if "qkv" in v.path]
    assert len(qkv) == 2  # one kernel per layer
    first, second = (tf.concat([tf.reshape(step(images)[i], [-1]) for i in qkv], 0) for _ in "12")
    # The seed generator moved on: another mask. At initialisation the attention is nearly
    # uniform, so another mask moves these gradients by ~0.2-1 %; the same mask would leave
    # them equal to float rounding (~1e-7).
    assert relative_error(first, second) > 1e-4
