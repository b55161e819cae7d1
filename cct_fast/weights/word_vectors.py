"""Pretrained word vectors (GloVe's text format) into a text model's word embedding, as the
official ``Embedder``'s ``pretrained_weight`` and ``embed_freeze`` do."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cct_fast.core.text_model import TextCCT
from cct_fast.errors import CheckpointError


def load_word_vectors(
    model: TextCCT,
    path: str | os.PathLike,
    vocabulary: list[str],
    *,
    trainable: bool = True,
) -> int:
    """Fill the rows of ``model``'s word embedding whose word has a vector in ``path``.

    Args:
        model: a :class:`cct_fast.TextCCT` whose ``vocab_size`` is ``len(vocabulary)``.
        path: a text file of lines ``word v1 v2 ...`` (GloVe's format), read one line at a
            time; its vectors must be as wide as the model's word embedding.
        vocabulary: the word of each id (a :class:`~cct_fast.data.text_encoder.TextEncoder`'s
            ``vocabulary``). Reserved tokens (``[UNK]``, ``[PAD]``) and WordPiece
            continuations (``##ing``) keep their rows; the padding row stays zero.
        trainable: False freezes the table (the official ``embed_freeze``).

    Returns:
        How many of the vocabulary's words had a vector.
    """
    table = model.word_embedding.table
    size, width = table.shape
    if len(vocabulary) != size:
        raise CheckpointError(
            f"The vocabulary has {len(vocabulary)} words, {model.name}'s word embedding {size} "
            "rows: build the model with vocab_size=len(vocabulary)."
        )
    wanted = {
        word: index
        for index, word in enumerate(vocabulary)
        if not (word.startswith("[") and word.endswith("]")) and not word.startswith("##")
    }
    rows = table.numpy()
    found, lines_read = 0, 0
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as lines:
            for lines_read, line in enumerate(lines, 1):
                word, _, rest = line.rstrip("\n").partition(" ")
                if word not in wanted:
                    continue
                rows[wanted.pop(word)] = _vector(rest, width, path, lines_read, word, model.name)
                found += 1
    except UnicodeDecodeError:
        raise CheckpointError(
            f"{path} is not a text file of word vectors (GloVe's format: a line 'word v1 v2 ...' "
            "per word, UTF-8). A binary word2vec file can be written as text with gensim's "
            "KeyedVectors.save_word2vec_format(path, binary=False)."
        ) from None
    if not lines_read:
        raise CheckpointError(f"{path} is empty: expected a line 'word v1 v2 ...' per word.")
    table.assign(rows)
    model.word_embedding.trainable = trainable
    return found


def _vector(text, width, path, line, word, model_name):
    """The ``width`` finite numbers of one line's ``text``."""
    try:
        vector = np.asarray(text.split(" "), dtype=np.float32)
    except ValueError:
        raise CheckpointError(
            f"{path}, line {line}: expected a word and {width} numbers."
        ) from None
    if vector.shape != (width,):
        raise CheckpointError(
            f"{path}, line {line}: a vector of {vector.size} values for {word!r}; "
            f"{model_name}'s word embedding is {width} wide."
        )
    if not np.isfinite(vector).all():
        raise CheckpointError(
            f"{path}, line {line}: the vector for {word!r} holds NaN or Inf; a model trained "
            "from it computes NaN."
        )
    return vector
