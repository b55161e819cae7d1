"""Raw text -> the text models' ``(token_ids, mask)``, with tensorflow-text, inside tf.data.

A :class:`TextEncoder` holds a WordPiece vocabulary learned from the training texts only
(``tensorflow_text.tools.wordpiece_vocab``), case-folds and splits each text on whitespace and
punctuation, looks the pieces up with ``FastWordpieceTokenizer``, and truncates and pads to
``seq_len`` with ``pad_model_inputs``. Ids 0 and 1 are ``[UNK]`` and ``[PAD]``: 1 is the
official padding id. tensorflow-text ops run on the CPU and XLA cannot compile them, so they
stay in the input pipeline and never enter the model.
"""

from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path

import tensorflow as tf

from cct_fast.base.files import atomic_output
from cct_fast.base.optional import require
from cct_fast.errors import DatasetError

RESERVED_TOKENS = ("[UNK]", "[PAD]")
PADDING_ID = RESERVED_TOKENS.index("[PAD]")  # the official Embedder's padding_idx
FORMAT = "cct_fast.TextEncoder/1"
# encoder.json is read whole: 64 MiB holds a vocabulary of millions of entries, far past the
# 30,000 that learn() makes by default.
MAX_FILE_BYTES = 64 * 2**20


def _text():
    return require(
        "tensorflow_text",
        "Tokenizing text",
        "'cct-fast[text]' (tensorflow-text of TensorFlow's own minor release)",
    )


class TextEncoder:
    """Strings -> ``(token_ids, mask)``, each (batch, ``seq_len``): int32 ids and a boolean
    mask that is true on real pieces. Callable on a batch of strings inside ``tf.data``."""

    def __init__(self, vocabulary: list[str], seq_len: int = 64, lower_case: bool = True):
        problem = _vocabulary_problem(vocabulary)
        if problem:
            raise DatasetError(f"Not a WordPiece vocabulary: {problem}.")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise DatasetError(f"seq_len must be a positive integer; got {seq_len!r:.40}.")
        if not isinstance(lower_case, bool):
            raise DatasetError(f"lower_case must be true or false; got {lower_case!r:.40}.")
        self.vocabulary = list(vocabulary)
        self.seq_len = seq_len
        self.lower_case = lower_case
        # A TensorFlow resource: a SavedModel that tokenizes tracks it (export.saved_model).
        self.tokenizer = _text().FastWordpieceTokenizer(
            vocab=self.vocabulary,
            suffix_indicator="##",
            unknown_token="[UNK]",
            no_pretokenization=False,
            support_detokenization=False,
            token_out_type=tf.int32,
        )

    @classmethod
    def learn(
        cls,
        texts,
        vocab_size: int = 30_000,
        seq_len: int = 64,
        lower_case: bool = True,
        min_count: int = 10,
    ) -> TextEncoder:
        """Learn a WordPiece vocabulary of up to ``vocab_size`` entries from ``texts`` (strings,
        or a ``tf.data.Dataset`` of them): the training split only, so that the test split's
        words are as unseen as they will be in use. A word or piece seen fewer than
        ``min_count`` times stays out (the learner's ``lower_thresh``; a small corpus fills
        ``vocab_size`` only with a low one)."""
        _text()  # the message that says how to install it, before its tools are imported
        from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

        if not isinstance(texts, tf.data.Dataset):
            texts = list(texts)
            if not texts:
                raise DatasetError("Cannot learn a vocabulary from no texts.")
            texts = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
        vocabulary = bert_vocab_from_dataset.bert_vocab_from_dataset(
            texts.batch(1024).prefetch(2),
            vocab_size=vocab_size,
            reserved_tokens=list(RESERVED_TOKENS),
            bert_tokenizer_params={"lower_case": lower_case},
            learn_params={"lower_thresh": min_count},
        )
        return cls(vocabulary, seq_len, lower_case)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def __call__(self, texts):
        texts = tf.convert_to_tensor(texts, tf.string)
        if self.lower_case:
            texts = _text().case_fold_utf8(texts)
        pieces = self.tokenizer.tokenize(texts)
        ids, mask = _text().pad_model_inputs(pieces, self.seq_len, pad_value=PADDING_ID)
        return tf.cast(ids, tf.int32), tf.cast(mask, tf.bool)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the encoder as JSON, atomically; :meth:`load` reads it back."""
        path = Path(path)
        text = json.dumps(
            {
                "format": FORMAT,
                "seq_len": self.seq_len,
                "lower_case": self.lower_case,
                "vocabulary": self.vocabulary,
            }
        )
        with atomic_output(path, expected_bytes=len(text)) as temporary:
            temporary.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextEncoder:
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ValueError(
                    f"{size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB an encoder "
                    "takes (cct_fast.data.text_encoder.MAX_FILE_BYTES)"
                )
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("format") != FORMAT:
                raise ValueError(f"format {saved.get('format')!r}, expected {FORMAT!r}")
            return cls(saved["vocabulary"], saved["seq_len"], saved["lower_case"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DatasetError(f"{path} is not a saved cct_fast text encoder ({error})") from None


def _vocabulary_problem(vocabulary) -> str | None:
    """What makes ``vocabulary`` unusable by ``FastWordpieceTokenizer`` (whose own errors are a
    bare RuntimeError or a pybind signature dump), or None."""
    if not isinstance(vocabulary, (list, tuple)):
        return f"expected a list of strings, got {type(vocabulary).__name__}"
    if list(vocabulary[: len(RESERVED_TOKENS)]) != list(RESERVED_TOKENS):
        return (
            f"it must start with {list(RESERVED_TOKENS)} (ids 0 and 1); this one starts with "
            f"{reprlib.repr(list(vocabulary[:2]))}"
        )
    odd = [i for i, entry in enumerate(vocabulary) if not isinstance(entry, str) or not entry]
    if odd:
        return (
            f"entries {odd[:5]} are {reprlib.repr([vocabulary[i] for i in odd[:5]])}, where "
            "every entry is a non-empty string"
        )
    seen, repeated = set(), []
    for entry in vocabulary:
        if entry in seen:
            repeated.append(entry)
        seen.add(entry)
    if repeated:
        return f"{len(repeated)} entries appear twice, such as {reprlib.repr(repeated[:5])}"
    return None
