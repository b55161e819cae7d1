import math

import keras
import numpy as np
import pytest

from cct_fast.core.layers import (
    ClassToken,
    ConvTokenizer,
    DropPath,
    MultiHeadSelfAttention,
    PositionalEmbedding,
    SequencePooling,
    TorchTruncatedNormal,
    TransformerEncoderLayer,
    resize_positional_embedding,
)
from cct_fast.core.layers.initializers import he_normal_untruncated, sinusoidal_table

from helpers import run_layer_test


def test_conv_tokenizer_shape_and_serialization(rng):
    tokenizer = ConvTokenizer(16, kernel_size=3, stride=1, padding=1, n_conv_layers=2, in_planes=8)
    images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    run_layer_test(tokenizer, images, (2, 64, 16))
    assert [tuple(conv.kernel.shape) for conv in tokenizer.convs] == [(3, 3, 3, 8), (3, 3, 8, 16)]


def test_conv_tokenizer_pads_symmetrically_like_pytorch():
    # All-ones 3x3 kernel, stride 2, padding 1 on a 4x4 image: PyTorch's windows cover rows
    # -1..1 and 1..3, so both see row 1. Keras "same" pads only after (rows 0..2 and 2..4), and
    # would report the pixel in the first window alone.
    tokenizer = ConvTokenizer(
        1, kernel_size=3, stride=2, padding=1, activation=False, max_pool=False
    )
    tokenizer.build((None, 4, 4, 1))
    tokenizer.convs[0].kernel.assign(np.ones((3, 3, 1, 1), "float32"))
    image = np.zeros((1, 4, 4, 1), "float32")
    image[0, 1, 1, 0] = 1.0
    tokens = np.asarray(tokenizer(image)).reshape(2, 2)
    np.testing.assert_array_equal(tokens, [[1, 1], [1, 1]])


def test_max_pool_padding_never_wins():
    tokenizer = ConvTokenizer(1, kernel_size=1, stride=1, padding=0, activation=False)
    tokenizer.build((None, 4, 4, 1))
    tokenizer.convs[0].kernel.assign(np.ones((1, 1, 1, 1), "float32"))
    image = -np.ones((1, 4, 4, 1), "float32")
    # With zero padding the border windows would report 0; PyTorch pads with -inf.
    np.testing.assert_array_equal(np.asarray(tokenizer(image)), -np.ones((1, 4, 1)))


def test_attention_matches_a_numpy_reference(rng):
    layer = MultiHeadSelfAttention(num_heads=4, attention_dropout=0.0)
    x = rng.standard_normal((2, 7, 32)).astype("float32")
    out = run_layer_test(layer, x, (2, 7, 32))
    qkv = (x @ layer.qkv.kernel.numpy()).reshape(2, 7, 3, 4, 8).transpose(2, 0, 3, 1, 4)
    scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) / np.sqrt(8)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    merged = (probs @ qkv[2]).transpose(0, 2, 1, 3).reshape(2, 7, 32)
    expected = merged @ layer.proj.kernel.numpy() + layer.proj.bias.numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert layer.qkv.bias is None


def test_attention_dropout_is_active_in_training_only(rng):
    layer = MultiHeadSelfAttention(num_heads=2, attention_dropout=0.5)
    run_layer_test(
        layer,
        rng.standard_normal((2, 5, 8)).astype("float32"),
        (2, 5, 8),
        stochastic_in_training=True,
    )


def test_drop_path_drops_whole_samples_and_rescales():
    layer = DropPath(0.5, seed=1)
    x = np.ones((256, 3, 4), "float32")
    out = np.asarray(layer(x, training=True))
    per_sample = out.reshape(256, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(1) == per_sample.max(1))  # a sample is kept or dropped whole
    assert 0.3 < (per_sample[:, 0] == 0).mean() < 0.7
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_encoder_layer_follows_the_official_order(rng):
    layer = TransformerEncoderLayer(num_heads=2, feedforward_dim=16, attention_dropout=0.0)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    out = run_layer_test(layer, x, (2, 5, 8))
    for norm in (layer.pre_norm, layer.norm1):
        norm.gamma.assign(rng.uniform(0.5, 1.5, 8).astype("float32"))
        norm.beta.assign(rng.standard_normal(8).astype("float32"))
        assert norm.epsilon == 1e-5

    def layer_norm(v, norm):
        mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mean) / np.sqrt(var + 1e-5) * norm.gamma.numpy() + norm.beta.numpy()

    erf = np.vectorize(math.erf)
    attended = np.asarray(layer.self_attn(layer.pre_norm(x)))
    stream = layer_norm(x + attended, layer.norm1)  # norm1 replaces the residual stream
    hidden = stream @ layer.linear1.kernel.numpy() + layer.linear1.bias.numpy()
    hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))  # exact GELU
    expected = stream + hidden @ layer.linear2.kernel.numpy() + layer.linear2.bias.numpy()
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-4, atol=1e-5)
    assert out.shape == expected.shape


def test_sequence_pooling_is_a_softmax_weighted_sum(rng):
    layer = SequencePooling()
    x = rng.standard_normal((3, 6, 4)).astype("float32")
    out = run_layer_test(layer, x, (3, 4))
    scores = x @ layer.attention_pool.kernel.numpy() + layer.attention_pool.bias.numpy()
    weights = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    np.testing.assert_allclose(out, (weights * x).sum(1), rtol=1e-5, atol=1e-6)


def test_class_token_is_prepended(rng):
    layer = ClassToken()
    x = rng.standard_normal((2, 3, 4)).astype("float32")
    out = run_layer_test(layer, x, (2, 4, 4))
    np.testing.assert_array_equal(out[:, 1:], x)
    np.testing.assert_array_equal(out[:, 0], 0.0)


def test_sine_embedding_matches_the_official_formula():
    table = sinusoidal_table(5, 6)[0]
    p, i = 3, 4
    assert table[p, i] == pytest.approx(np.sin(p / 10000 ** (2 * (i // 2) / 6)))
    assert table[p, i + 1] == pytest.approx(np.cos(p / 10000 ** (2 * (i // 2) / 6)))
    layer = PositionalEmbedding("sine", grid_size=2)
    x = np.zeros((1, 4, 6), "float32")
    np.testing.assert_allclose(np.asarray(layer(x))[0], sinusoidal_table(4, 6)[0])
    assert not layer.embedding.trainable


def test_learnable_embedding_serializes(rng):
    layer = PositionalEmbedding("learnable", grid_size=3, num_prefix_tokens=1)
    run_layer_test(layer, rng.standard_normal((2, 10, 4)).astype("float32"), (2, 10, 4))
    assert layer.embedding.trainable


def test_positional_embedding_resize_matches_pytorch_interpolate(rng):
    torch = pytest.importorskip("torch")
    embedding = rng.standard_normal((1, 1 + 8 * 8, 5)).astype("float32")
    for new_side in (4, 11):  # down- and up-sampling
        ours = resize_positional_embedding(embedding, new_side, num_prefix_tokens=1)
        grid = torch.from_numpy(embedding[0, 1:]).reshape(1, 8, 8, 5).permute(0, 3, 1, 2)
        theirs = torch.nn.functional.interpolate(
            grid, size=(new_side, new_side), mode="bilinear", align_corners=False
        )
        theirs = theirs.permute(0, 2, 3, 1).reshape(1, -1, 5).numpy()
        np.testing.assert_array_equal(ours[:, :1], embedding[:, :1])
        np.testing.assert_allclose(ours[:, 1:], theirs, rtol=1e-5, atol=1e-6)


def test_initializers_have_the_official_spread():
    dense = np.asarray(TorchTruncatedNormal(0.02, seed=0)((400, 500)))
    # Keras' TruncatedNormal(0.02) would give a std of about 0.0176.
    assert dense.std() == pytest.approx(0.02, rel=0.02)
    conv = np.asarray(he_normal_untruncated(seed=0)((3, 3, 64, 256)))
    assert conv.std() == pytest.approx(np.sqrt(2 / (3 * 3 * 64)), rel=0.02)
    # Untruncated: values beyond two standard deviations occur (~4.6 %).
    assert (np.abs(conv) > 2 * conv.std()).mean() == pytest.approx(0.0455, abs=0.005)


def test_layers_are_registered_for_keras_saving():
    for layer in (ConvTokenizer(8, 3, 1, 1), PositionalEmbedding("sine", 2), DropPath(0.1)):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored) is type(layer)
        assert restored.get_config() == layer.get_config()
