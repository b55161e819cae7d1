import pytest

import cct_fast

OFFICIAL_CCT = [
    "cct_2_3x2_32",
    "cct_2_3x2_32_sine",
    "cct_4_3x2_32",
    "cct_4_3x2_32_sine",
    "cct_6_3x1_32",
    "cct_6_3x1_32_sine",
    "cct_6_3x2_32",
    "cct_6_3x2_32_sine",
    "cct_7_3x1_32",
    "cct_7_3x1_32_sine",
    "cct_7_3x1_32_c100",
    "cct_7_3x1_32_sine_c100",
    "cct_7_3x2_32",
    "cct_7_3x2_32_sine",
    "cct_7_7x2_224",
    "cct_7_7x2_224_sine",
    "cct_14_7x2_224",
    "cct_14_7x2_384",
    "cct_14_7x2_384_fl",
]


def test_every_official_name_is_listed():
    expected = OFFICIAL_CCT + [
        f"{family}_{size}_4_32{suffix}"
        for family in ("cvt", "vit")
        for size in (2, 4, 6, 7)
        for suffix in ("", "_sine")
    ]
    assert cct_fast.list_models(modality="image") == sorted(expected)
    assert cct_fast.list_models("cct_14*") == [
        "cct_14_7x2_224",
        "cct_14_7x2_384",
        "cct_14_7x2_384_fl",
    ]


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "cct_7_3x1_32_sine_c100",
            dict(
                num_classes=100,
                positional_embedding="sine",
                kernel_size=3,
                n_conv_layers=1,
                img_size=32,
            ),
        ),
        ("cct_7_7x2_224", dict(num_classes=102, img_size=224, kernel_size=7, n_conv_layers=2)),
        (
            "cct_14_7x2_384_fl",
            dict(
                num_classes=102,
                img_size=384,
                embedding_dim=384,
                num_layers=14,
                num_heads=6,
                mlp_ratio=3,
            ),
        ),
        ("cvt_6_4_32", dict(tokenizer="patch", seq_pool=True, kernel_size=4, embedding_dim=256)),
        ("vit_2_4_32_sine", dict(tokenizer="patch", seq_pool=False, positional_embedding="sine")),
    ],
)
def test_official_defaults(name, expected):
    config = cct_fast.create_model(name).config
    assert {key: getattr(config, key) for key in expected} == expected
    assert (config.dropout, config.attention_dropout, config.stochastic_depth) == (0.0, 0.1, 0.1)


def test_one_function_per_name_with_overrides():
    model = cct_fast.cct_7_3x1_32(num_classes=5, img_size=64, stochastic_depth=0.0)
    assert model.name == "cct_7_3x1_32"
    assert (model.config.num_classes, model.config.img_size) == (5, 64)
    assert model.config.drop_path_rates == [0.0] * 7
    assert model.config.sequence_length == 32 * 32


def test_create_model_positional_embedding_override():
    model = cct_fast.create_model("cct_2_3x2_32", positional_embedding="none")
    assert model.positional_embedding is None
    assert model.image_shape == (None, None, 3)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(
        ValueError, match=r"Unknown model name 'cct_7_3x1'\. Did you mean .*cct_7_3x1_32"
    ):
        cct_fast.create_model("cct_7_3x1")
    with pytest.raises(ValueError, match="list_models"):
        cct_fast.create_model("resnet50")
