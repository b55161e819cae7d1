"""MACs counted from the configuration, against the official figure and against the layers of
the built model."""

import math

import pytest

import cct_fast
from cct_fast.core.costs import costs, weight_count


def test_cct_7_3x1_matches_the_official_count_and_adds_the_attention_matmuls():
    cost = costs(cct_fast.create_model("cct_7_3x1_32").config)
    assert round(cost.official_macs / 1e9, 3) == 0.947  # the official README: 0.95 G
    assert cost.attention_matmuls == 7 * 2 * 256 * 256 * 256
    assert round(cost.macs / 1e9, 2) == 1.18


def _macs_of_the_layers(model):
    """Each convolution and dense layer of the built model times the positions it runs at."""
    config = model.config
    tokens = config.sequence_length + config.num_prefix_tokens
    total = 0
    stages = zip(*(config.tokenizer_stages(side) for side in config.image_size), strict=True)
    for conv, ((height, _), (width, _)) in zip(model.tokenizer.convs, stages, strict=True):
        total += height * width * math.prod(conv.kernel.shape)
    for block in model.blocks:
        layers = (block.self_attn.qkv, block.self_attn.proj, block.linear1, block.linear2)
        total += tokens * sum(math.prod(layer.kernel.shape) for layer in layers)
    if model.sequence_pool is not None:
        total += tokens * math.prod(model.sequence_pool.attention_pool.kernel.shape)
    return total + math.prod(model.head.kernel.shape)


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "cct_14_7x2_384", "cvt_4_4_32", "vit_6_4_32"])
def test_the_count_is_that_of_the_built_layers(name):
    model = cct_fast.create_model(name)
    assert costs(model.config).official_macs == _macs_of_the_layers(model)


def test_a_text_model_counts_its_tokenizer_and_encoder():
    """text_cct_2 (k = 4): 65 windows of 4 words x 300 into 128 filters, then 33 tokens through
    two layers of width 128, sequence pooling and a 4-class head."""
    cost = costs(cct_fast.create_model("text_cct_2", vocab_size=10).config)
    assert cost.convolutions == 65 * 4 * 300 * 128
    assert cost.linears == 2 * 33 * (4 * 128 * 128 + 2 * 128 * 128) + 33 * 128 + 128 * 4
    assert cost.attention_matmuls == 2 * 2 * 33 * 33 * 128


@pytest.mark.parametrize(
    "name, settings",
    [
        ("cct_2_3x2_32", {}),
        ("cct_14_7x2_384", {}),
        ("cct_7_7x2_224_sine", dict(img_size=(96, 160))),
        ("cvt_4_4_32", dict(num_classes=7)),
        ("vit_6_4_32", {}),
        ("text_cct_2", dict(vocab_size=500)),
        ("text_cvt_4", dict(vocab_size=500)),
        ("text_vit_6", dict(vocab_size=500, seq_len=40)),
        ("text_transformer_2", dict(vocab_size=500)),
    ],
)
def test_the_weight_count_is_that_of_the_built_model(name, settings):
    model = cct_fast.create_model(name, **settings)
    assert weight_count(model.config) == model.count_params()
    headless = cct_fast.create_model(name, include_top=False, **settings)
    assert weight_count(headless.config, include_top=False) == headless.count_params()
