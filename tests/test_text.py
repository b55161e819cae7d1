"""The text models against a PyTorch reference of the official code
(:mod:`cct_fast.testing.official_text`): logits, parameter counts, masks."""

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.core.text_config import TextConfig
from cct_fast.weights.official_keys import load_official_state_dict, official_state_dict

from helpers import relative_error

PARITY_TOLERANCE = 1e-5
VOCAB = 1000  # the official 100,000 x 300 table adds nothing to these checks but time
CLASSES = 4  # AG News's, as nlp/README.md counts them


@pytest.fixture(scope="session")
def official_text(official):
    from cct_fast.testing import official_text

    return official_text


def _ids_and_mask(rng, batch, seq_len):
    """Random ids, each example padded after a random length (at least one real word)."""
    ids = rng.integers(0, VOCAB, (batch, seq_len))
    lengths = rng.integers(1, seq_len + 1, batch)
    lengths[0] = seq_len  # one full example
    mask = np.arange(seq_len)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, 1)  # the official padding id
    return ids.astype("int64"), mask


def test_every_official_text_name_is_listed():
    assert cct_fast.list_models("text_*") == sorted(
        f"text_{family}_{size}"
        for family in ("cct", "cvt", "vit", "transformer")
        for size in (2, 4, 6)
    )
    assert cct_fast.list_models(modality="text") == cct_fast.list_models("text_*")


@pytest.mark.parametrize(
    "name, kernel_size, expected",
    [
        ("text_cct_2", 1, 237_701),
        ("text_cct_2", 2, 276_101),
        ("text_cct_2", 4, 352_901),
        ("text_cct_4", 1, 436_101),
        ("text_cct_4", 2, 474_501),
        ("text_cct_4", 4, 551_301),
        ("text_cct_6", 1, 3_236_613),
        ("text_cct_6", 2, 3_313_413),
        ("text_cct_6", 4, 3_467_013),
    ],
)
def test_parameter_counts_published_by_the_official_code(name, kernel_size, expected):
    """nlp/README.md counts AG News models (4 classes) without the word table or the sine
    table."""
    model = cct_fast.create_model(name, vocab_size=VOCAB, kernel_size=kernel_size, num_classes=4)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable - VOCAB * 300 == expected


def test_the_official_sizes_are_those_read_from_the_official_files():
    """cct_fast's table against the reference's, each entry of which names its file."""
    from cct_fast.testing.official_text import OFFICIAL_TEXT_DEFAULTS, OFFICIAL_TEXT_SIZES

    assert set(OFFICIAL_TEXT_SIZES) == set(cct_fast.list_models("text_*"))
    for name, sizes in OFFICIAL_TEXT_SIZES.items():
        config = cct_fast.create_model(name).config
        built = (config.num_layers, config.num_heads, config.mlp_ratio, config.width)
        assert built == sizes, name
        assert (config.vocab_size, config.padding_idx, config.seq_len, config.kernel_size) == (
            OFFICIAL_TEXT_DEFAULTS["vocab_size"],
            OFFICIAL_TEXT_DEFAULTS["padding_idx"],
            OFFICIAL_TEXT_DEFAULTS["seq_len"],
            OFFICIAL_TEXT_DEFAULTS["kernel_size"],
        )


@pytest.mark.parametrize("name", cct_fast.list_models("text_*"))
def test_parameter_count_matches_the_reference(official, official_text, name):
    model = cct_fast.create_model(name, vocab_size=VOCAB, num_classes=CLASSES)
    reference = official_text.official_text_model(name, vocab_size=VOCAB, num_classes=CLASSES)
    assert model.count_params() == sum(t.numel() for t in reference.state_dict().values())


@pytest.mark.parametrize("implementation", ["reference", "fused"])
@pytest.mark.parametrize("name", cct_fast.list_models("text_*"))
def test_logits_match_the_reference(official, official_text, name, implementation, rng):
    """In the main branch's Conv2d tokenizer form, and (batch 3) in the Conv1d one."""
    model = cct_fast.create_model(
        name, vocab_size=VOCAB, num_classes=CLASSES, implementation=implementation
    )
    reference = official.trained_like(
        official_text.official_text_model(name, vocab_size=VOCAB, num_classes=CLASSES),
        seed=int(rng.integers(1 << 30)),
    )
    state = official.state_dict(reference)
    for form, batches in (
        (state, (1, 5)),
        (official_text.as_conv1d_state_dict(state), (3,)),
    ):
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        load_official_state_dict(model, form)
        for batch in batches:
            ids, mask = _ids_and_mask(rng, batch, model.config.seq_len)
            expected = official_text.official_text_logits(reference, ids, mask)
            error = relative_error(model((ids, mask)), expected)
            assert error <= PARITY_TOLERANCE, f"{name}, batch {batch}: relative error {error:.2e}"


def test_padding_does_not_change_the_real_tokens_logits(rng):
    """With masked attention, what follows the last real word cannot reach the real tokens;
    only the unmasked sequence pooling sees the (zeroed) padded tokens, as officially."""
    model = cct_fast.create_model("text_vit_2", vocab_size=VOCAB)
    ids, mask = _ids_and_mask(rng, 2, model.config.seq_len)
    mask[1, 32:] = False
    other = np.where(mask, ids, rng.integers(0, VOCAB, ids.shape))
    np.testing.assert_allclose(model((ids, mask)), model((other, mask)), rtol=1e-6, atol=1e-6)


def test_official_state_dict_holds_the_official_keys_and_shapes():
    model = cct_fast.create_model("text_cct_2", vocab_size=VOCAB)
    state = official_state_dict(model)
    assert state["embedder.embeddings.weight"].shape == (VOCAB, 300)
    assert state["tokenizer.conv_layers.0.weight"].shape == (128, 1, 4, 300)  # a (k, 300) Conv2d
    assert state["classifier.positional_emb"].shape == (1, 34, 128)  # 33 tokens + padding row
    cvt = official_state_dict(cct_fast.create_model("text_cvt_2", vocab_size=VOCAB))
    assert cvt["tokenizer.conv_layers.0.weight"].shape == (128, 1, 4, 300)  # a (k, 300) Conv2d
    transformer = official_state_dict(cct_fast.create_model("text_transformer_2", vocab_size=10))
    assert transformer["classifier.positional_emb"].shape == (1, 66, 300)  # class + padding rows
    assert "tokenizer.conv_layers.0.weight" not in transformer


def test_inputs_are_checked_with_what_was_expected():
    model = cct_fast.create_model("text_cct_2", vocab_size=VOCAB)
    ids = np.zeros((2, 64), "int64")
    with pytest.raises(ValueError, match=r"token_ids of shape \(batch, 64\); got \(2, 32\)"):
        model((ids[:, :32], ids[:, :32] > 0))
    with pytest.raises(TypeError, match="integer token ids"):
        model((ids.astype("float32"), ids > 0))
    with pytest.raises(TypeError, match=r"takes \(token_ids, mask\)"):
        model(ids)
    with pytest.raises(ValueError, match=r"vocabulary of 1000 ids; got token ids from 1000 to"):
        model((np.where(ids == 0, 1000, 1), ids == 0))
    for texts in ((tf.constant(["a dog"] * 2), ids > 0), ["a dog"], "a dog", np.array(["a dog"])):
        with pytest.raises(TypeError, match="takes token ids, not texts: tokenize them first"):
            model(texts)
    with pytest.raises(TypeError, match=r"boolean \(or 0/1 integer\) mask; got .*float32"):
        model((ids, ids.astype("float32")))
    with pytest.raises(cct_fast.ConfigError, match="seq_len 62 must be a multiple"):
        cct_fast.create_model("text_cvt_2", vocab_size=VOCAB, seq_len=62)
    with pytest.raises(cct_fast.ConfigError, match="give seq_len"):
        cct_fast.create_model("text_cct_2", img_size=32)


def test_text_config_derives_the_official_tokenizer():
    config = TextConfig(kernel_size=4)
    assert (config.conv_stride, config.conv_padding, config.sequence_length) == (1, 2, 33)
    assert TextConfig(tokenizer="patch", kernel_size=4).sequence_length == 16


def test_a_text_model_round_trips_through_a_keras_file(tmp_path, rng):
    import keras

    model = cct_fast.create_model("text_vit_2", vocab_size=VOCAB, positional_embedding="learnable")
    ids, mask = _ids_and_mask(rng, 3, 64)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded((ids, mask)), model((ids, mask)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_and_xla_stay_close_to_float32(policy, rng):
    from cct_fast.core.model import rebuild

    exact = cct_fast.create_model("text_cct_2", vocab_size=VOCAB)
    ids, mask = _ids_and_mask(rng, 4, 64)
    mixed = rebuild(exact, implementation="fused", policy=policy)
    logits = np.asarray(mixed((ids, mask)))
    assert logits.dtype == np.float32
    assert relative_error(logits, exact((ids, mask))) <= 2e-2
    compiled = tf.function(lambda i, m: exact((i, m)), jit_compile=True)
    assert relative_error(compiled(ids, mask), exact((ids, mask))) <= 1e-5


@pytest.mark.parametrize("form", ["conv2d", "conv1d"])
def test_official_checkpoints_with_the_official_word_table_convert(
    official, official_text, tmp_path, rng, form
):
    """A .pth as the released TextCCT checkpoints are (100,000 x 300 words, the main branch's
    Conv2d tokenizer), or in the Conv1d form: weights= and `cct-fast convert` read both."""
    from cct_fast.cli import main as cli

    reference = official.trained_like(
        official_text.official_text_model("text_cct_2", num_classes=CLASSES), seed=4
    )
    state = official.state_dict(reference)
    if form == "conv1d":
        state = official_text.as_conv1d_state_dict(state)
    path = tmp_path / "text.pth"
    official.torch.save({k: official.torch.from_numpy(v) for k, v in state.items()}, path)
    assert state["embedder.embeddings.weight"].shape == (100_000, 300)
    ids, mask = _ids_and_mask(rng, 3, 64)
    expected = official_text.official_text_logits(reference, ids, mask)
    model = cct_fast.create_model("text_cct_2", num_classes=CLASSES, weights=path)
    assert relative_error(model((ids, mask)), expected) <= PARITY_TOLERANCE
    output = tmp_path / "text.weights.h5"
    assert cli(["convert", str(path), "--model", "text_cct_2", "-o", str(output)]) == 0
    converted = cct_fast.create_model("text_cct_2", num_classes=CLASSES, weights=output)
    assert relative_error(converted((ids, mask)), expected) <= PARITY_TOLERANCE
    with pytest.raises(cct_fast.CheckpointError, match=r"checkpoint \(100000, 300\), model"):
        cct_fast.create_model("text_cct_2", vocab_size=VOCAB, weights=path)
    with pytest.raises(cct_fast.CheckpointError, match=r"\(256, 1, 4, 300\) or \(256, 300, 4\)"):
        cct_fast.create_model("text_cct_6", weights=path)
