"""Raw text to (token_ids, mask) with tensorflow-text: the vocabulary, padding, truncation,
tf.data, and a saved encoder that reads back."""

import json

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.errors import DatasetError

tft = pytest.importorskip("tensorflow_text")
from cct_fast.data.text_encoder import PADDING_ID, TextEncoder  # noqa: E402

WORDS = ["apple", "banana", "cherry", "tower", "river", "planet", "quiet", "storm", "garden"]


def _corpus(rng, count=300):
    return [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(count)]


@pytest.fixture(scope="module")
def encoder():
    rng = np.random.default_rng(7)
    return TextEncoder.learn(_corpus(rng), vocab_size=200, seq_len=8)


def test_the_vocabulary_starts_with_the_official_reserved_ids(encoder):
    assert encoder.vocabulary[:2] == ["[UNK]", "[PAD]"] and PADDING_ID == 1
    assert set(WORDS) <= set(encoder.vocabulary)
    assert encoder.vocab_size <= 200


def test_texts_are_case_folded_padded_and_truncated(encoder):
    ids, mask = encoder(["Apple RIVER", " ".join(["storm"] * 20), ""])
    assert ids.dtype == tf.int32 and mask.dtype == tf.bool and ids.shape == (3, 8)
    apple, river = encoder.vocabulary.index("apple"), encoder.vocabulary.index("river")
    np.testing.assert_array_equal(ids[0], [apple, river] + [PADDING_ID] * 6)
    np.testing.assert_array_equal(mask[0], [True, True] + [False] * 6)
    assert bool(tf.reduce_all(mask[1]))  # truncated to seq_len
    assert not bool(tf.reduce_any(mask[2]))  # an empty text is all padding


def test_words_the_training_texts_lack_become_pieces_or_unknown(encoder):
    ids, mask = encoder(["zebra"])
    real = ids.numpy()[mask.numpy()]
    assert len(real) >= 1 and "zebra" not in encoder.vocabulary
    assert set(real) <= set(range(encoder.vocab_size))


def test_it_runs_inside_tf_data_and_feeds_a_text_model(encoder):
    texts = tf.data.Dataset.from_tensor_slices(["apple tower", "quiet garden storm"] * 3)
    batches = texts.batch(4).map(encoder)
    model = cct_fast.create_model(
        "text_cct_2", vocab_size=encoder.vocab_size, seq_len=encoder.seq_len, num_classes=3
    )
    logits = [model((ids, mask)) for ids, mask in batches]
    assert [tuple(batch.shape) for batch in logits] == [(4, 3), (2, 3)]


def test_a_saved_encoder_reads_back_and_encodes_alike(encoder, tmp_path):
    texts = ["Cherry planet", "banana banana banana"]
    loaded = TextEncoder.load(encoder.save(tmp_path / "encoder.json"))
    assert loaded.vocabulary == encoder.vocabulary and loaded.seq_len == 8
    for new, old in zip(loaded(texts), encoder(texts), strict=True):
        np.testing.assert_array_equal(new, old)


def test_bad_files_and_vocabularies_say_what_is_wrong(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DatasetError, match="not a saved cct_fast text encoder"):
        TextEncoder.load(tmp_path / "other.json")
    with pytest.raises(DatasetError, match="not a saved cct_fast text encoder"):
        TextEncoder.load(tmp_path / "missing.json")
    with pytest.raises(DatasetError, match=r"must start with \['\[UNK\]', '\[PAD\]'\]"):
        TextEncoder(["[PAD]", "[UNK]", "a"])
    with pytest.raises(DatasetError, match="from no texts"):
        TextEncoder.learn([])


def test_without_tensorflow_text_one_message_says_how_to_install_it(monkeypatch):
    import sys

    for name in [m for m in sys.modules if m.startswith("tensorflow_text")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'cct-fast\[text\]'"):
        TextEncoder.learn(["some text"])
    with pytest.raises(ImportError, match=r"pip install 'cct-fast\[text\]'"):
        TextEncoder(["[UNK]", "[PAD]", "a"])


def test_other_scripts_and_emoji_are_pieces_of_the_vocabulary():
    texts = ["猫 と 犬 🐱 🐶", "дождь и снег ⛈", "مباراة كرة القدم ⚽"] * 20
    learned = TextEncoder.learn(texts, vocab_size=100, seq_len=6)
    ids, mask = learned(["снег 🐶 القدم", "⚽ 猫"])
    words = [
        [learned.vocabulary[i] for i in row[: int(real.sum())]]
        for row, real in zip(ids.numpy(), mask.numpy(), strict=True)
    ]
    assert words == [["снег", "🐶", "القدم"], ["⚽", "猫"]]


def test_a_single_piece_per_text_still_leaves_a_token():
    """seq_len 1: the convolution's padding leaves the tokenizer two tokens."""
    model = cct_fast.create_model("text_cct_2", vocab_size=10, seq_len=1)
    logits = model((np.array([[3], [1]]), np.array([[True], [False]])))
    assert model.config.sequence_length == 2 and np.isfinite(logits).all()


def test_min_count_keeps_rarer_words_in_the_vocabulary():
    rng = np.random.default_rng(3)
    rare = [f"word{i}" for i in range(40)]
    texts = _corpus(rng) + [f"{word} {word} {word}" for word in rare]  # three times each
    default = TextEncoder.learn(texts, vocab_size=500, seq_len=8)
    low = TextEncoder.learn(texts, vocab_size=500, seq_len=8, min_count=2)
    assert not set(rare) & set(default.vocabulary)
    assert set(rare) <= set(low.vocabulary)


def test_token_deletion_keeps_each_row_in_order_and_never_empties_it():
    from cct_fast.data.text_pipeline import delete_tokens

    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 33, 64)
    mask = np.arange(32)[None, :] < lengths[:, None]
    ids = np.where(mask, rng.integers(2, 1000, (64, 32)), PADDING_ID).astype(np.int32)
    seed = tf.constant([11, 0], tf.int64)
    new_ids, new_mask = (t.numpy() for t in delete_tokens(ids, mask, 0.3, seed))
    again, _ = delete_tokens(ids, mask, 0.3, seed)
    np.testing.assert_array_equal(again, new_ids)  # stateless: a resumed epoch draws alike
    kept = new_mask.sum(axis=1)
    assert (kept >= 1).all() and (kept <= lengths).all()
    assert 0.6 < kept.sum() / lengths.sum() < 0.8  # about 30 % deleted
    for row in range(64):
        assert (new_mask[row] == (np.arange(32) < kept[row])).all()  # still padded at the end
        assert (new_ids[row][~new_mask[row]] == PADDING_ID).all()
        source = iter(ids[row][mask[row]])
        assert all(piece in source for piece in new_ids[row][new_mask[row]])  # a subsequence
    everything, _ = delete_tokens(ids, mask, 0.9999, seed)
    assert (np.asarray(everything)[:, 0] == ids[:, 0]).all()  # no row left empty
