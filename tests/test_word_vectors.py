"""GloVe-format word vectors into a text model's word embedding."""

import numpy as np
import pytest

import cct_fast
from cct_fast.weights.word_vectors import load_word_vectors

VOCABULARY = ["[UNK]", "[PAD]", "apple", "river", "##s", "storm"]


def _model(width=8):
    return cct_fast.create_model(
        "text_transformer_2", vocab_size=len(VOCABULARY), word_embedding_dim=width, seq_len=8
    )


def _glove(path, width=8, rows=None):
    rows = rows or {"apple": 1.0, "storm": -2.0, "other": 3.0, "##s": 4.0}
    path.write_text("".join(f"{w} {' '.join([str(v)] * width)}\n" for w, v in rows.items()))
    return path


def test_the_words_found_take_their_vectors_and_the_rest_keep_theirs(tmp_path):
    model = _model()
    before = model.word_embedding.table.numpy().copy()
    found = load_word_vectors(model, _glove(tmp_path / "glove.txt"), VOCABULARY)
    after = model.word_embedding.table.numpy()
    assert found == 2
    np.testing.assert_array_equal(after[2], np.full(8, 1.0))
    np.testing.assert_array_equal(after[5], np.full(8, -2.0))
    np.testing.assert_array_equal(after[[0, 3, 4]], before[[0, 3, 4]])  # unk, unseen, ##s
    np.testing.assert_array_equal(after[1], np.zeros(8))  # the padding row
    assert model.word_embedding.trainable


def test_frozen_vectors_are_not_trained(tmp_path):
    model = _model()
    load_word_vectors(model, _glove(tmp_path / "glove.txt"), VOCABULARY, trainable=False)
    assert model.word_embedding.table.path not in {v.path for v in model.trainable_variables}


def test_mismatches_name_the_line_and_both_widths(tmp_path):
    with pytest.raises(cct_fast.CheckpointError, match=r"line 1: a vector of 4 values.*8 wide"):
        load_word_vectors(_model(), _glove(tmp_path / "g.txt", width=4), VOCABULARY)
    (tmp_path / "bad.txt").write_text("apple 1 2 x 4 5 6 7 8\n")
    with pytest.raises(cct_fast.CheckpointError, match="line 1: expected a word and 8 numbers"):
        load_word_vectors(_model(), tmp_path / "bad.txt", VOCABULARY)
    with pytest.raises(cct_fast.CheckpointError, match="vocab_size=len"):
        load_word_vectors(_model(), _glove(tmp_path / "g.txt"), VOCABULARY[:3])


def test_malformed_vector_files_are_refused_and_leave_the_table_as_it_was(tmp_path):
    model = _model()
    before = model.word_embedding.table.numpy().copy()
    _glove(tmp_path / "nan.txt", rows={"apple": 1.0, "storm": float("nan")})
    with pytest.raises(cct_fast.CheckpointError, match="line 2: the vector for 'storm' holds NaN"):
        load_word_vectors(model, tmp_path / "nan.txt", VOCABULARY)
    # word2vec's binary format: a header line, then each word and its raw float32 values
    vector = np.ones(8, np.float32)
    (tmp_path / "w2v.bin").write_bytes(b"1 8\napple " + vector.tobytes() + b"\n")
    with pytest.raises(cct_fast.CheckpointError, match="save_word2vec_format.*binary=False"):
        load_word_vectors(model, tmp_path / "w2v.bin", VOCABULARY)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(cct_fast.CheckpointError, match="empty.txt is empty"):
        load_word_vectors(model, tmp_path / "empty.txt", VOCABULARY)
    np.testing.assert_array_equal(model.word_embedding.table.numpy(), before)
