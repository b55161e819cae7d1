import pytest

from cct_fast import CCTConfig, ConfigError
from cct_fast.core.text_config import TextConfig


@pytest.mark.parametrize(
    "kwargs, stride, padding, tokens",
    [
        # CCT-7/3x1 at 32 px: conv 3/1/1 keeps 32, pool 3/2/1 halves to 16 -> 256 tokens.
        (dict(kernel_size=3, n_conv_layers=1, img_size=32), 1, 1, 256),
        # CCT-2/3x2 at 32 px: two conv+pool stages -> 8x8.
        (dict(kernel_size=3, n_conv_layers=2, img_size=32), 1, 1, 64),
        # CCT-14/7x2 at 224 px: conv 7/2/3 -> 112, pool -> 56, conv -> 28, pool -> 14.
        (dict(kernel_size=7, n_conv_layers=2, img_size=224), 2, 3, 196),
        (dict(kernel_size=7, n_conv_layers=2, img_size=384), 2, 3, 576),
        # CVT / ViT-Lite 4x4 patches at 32 px.
        (dict(tokenizer="patch", kernel_size=4, img_size=32), 4, 0, 64),
    ],
)
def test_derived_stride_padding_and_sequence_length(kwargs, stride, padding, tokens):
    config = CCTConfig(**kwargs)
    assert (config.conv_stride, config.conv_padding, config.sequence_length) == (
        stride,
        padding,
        tokens,
    )


def test_replace_derives_stride_and_padding_again():
    config = CCTConfig(kernel_size=3).replace(kernel_size=7)
    assert (config.conv_stride, config.conv_padding) == (2, 3)


def test_explicit_stride_and_padding_win():
    config = CCTConfig(kernel_size=7, stride=1, padding=0, img_size=32)
    side = ((32 - 7) // 1 + 1 + 2 - 3) // 2 + 1
    assert config.token_grid == (side, side)


def test_non_square_images_make_a_non_square_token_grid():
    config = CCTConfig(kernel_size=3, n_conv_layers=1, img_size=(32, 48))
    assert (config.image_size, config.token_grid, config.sequence_length) == (
        (32, 48),
        (16, 24),
        384,
    )
    assert CCTConfig(img_size=[32, 48]).img_size == (32, 48)  # as a saved config reads back
    assert CCTConfig(img_size=40).image_size == (40, 40)


def test_drop_path_rates_rise_linearly_from_zero():
    assert CCTConfig(num_layers=5, stochastic_depth=0.2).drop_path_rates == pytest.approx(
        [0.0, 0.05, 0.1, 0.15, 0.2]
    )
    assert CCTConfig(num_layers=1).drop_path_rates == [0.0]


def test_vit_lite_has_one_prefix_token():
    assert CCTConfig(seq_pool=False).num_prefix_tokens == 1
    assert CCTConfig().num_prefix_tokens == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(embedding_dim=100, num_heads=3), "divisible by num_heads"),
        (dict(positional_embedding="rope"), "positional_embedding must be one of"),
        (dict(tokenizer="pixels"), "tokenizer must be one of"),
        (dict(tokenizer="patch", kernel_size=5, img_size=32), "divisible by the patch size"),
        (dict(tokenizer="patch", kernel_size=4, img_size=(32, 30)), "divisible by the patch size"),
        (dict(img_size=(32, 0)), r"img_size must be a positive integer or a \(height, width\)"),
        (dict(img_size=(32, 32, 3)), "img_size must be a positive integer or a"),
        (dict(img_size=3, kernel_size=7, padding=0), "too small"),
        (dict(dropout=1.0), "dropout must be in"),
        (dict(num_layers=0), "num_layers must be a positive integer"),
        (dict(stride=0), "stride must be a positive integer"),
    ],
)
def test_invalid_configuration_is_refused_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CCTConfig(**kwargs)


@pytest.mark.parametrize(
    "config_type, wrong, expected",
    [
        (
            CCTConfig,
            dict(tokenizer="pixels", num_layers=0, dropout=1.5, img_size=0),
            [
                "Invalid CCT configuration: tokenizer must be one of ('convolutional', 'patch'), "
                "got 'pixels'",
                "num_layers must be a positive integer, got 0",
                "dropout must be in [0, 1), got 1.5",
                "img_size must be a positive integer or a (height, width) pair of them, got 0",
            ],
        ),
        (
            TextConfig,
            dict(tokenizer="words", vocab_size=0, padding=-1, attention_dropout=1.0),
            [
                "Invalid text model configuration: tokenizer must be one of ('convolutional', "
                "'patch', 'none'), got 'words'",
                "padding must be a non-negative integer, got -1",
                "attention_dropout must be in [0, 1), got 1.0",
                "vocab_size must be a positive integer, got 0",
            ],
        ),
    ],
)
def test_every_problem_of_a_configuration_is_listed_in_one_error(config_type, wrong, expected):
    with pytest.raises(ConfigError) as refused:
        config_type(**wrong)
    message = str(refused.value)
    assert all(part in message for part in expected), message
    assert message.count(";") == len(expected) - 1


def test_the_transformer_names_the_width_its_heads_must_divide():
    with pytest.raises(ConfigError, match=r"word_embedding_dim \(300\) must be divisible by num_"):
        TextConfig(tokenizer="none", num_heads=7)
