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
        vocabulary: the word of each id (a :class:`~cct_fast.train.text_encoder.TextEncoder`'s
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
    found = 0
    path = Path(path)
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            if word not in wanted:
                continue
            try:
                vector = np.asarray(rest.split(" "), dtype=np.float32)
            except ValueError:
                raise CheckpointError(
                    f"{path}, line {number}: expected a word and {width} numbers."
                ) from None
            if vector.shape != (width,):
                raise CheckpointError(
                    f"{path}, line {number}: a vector of {vector.size} values for {word!r}; "
                    f"{model.name}'s word embedding is {width} wide."
                )
            rows[wanted.pop(word)] = vector
            found += 1
    table.assign(rows)
    model.word_embedding.trainable = trainable
    return found
