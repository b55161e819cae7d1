"""The text Compact Transformers: TextCCT, TextCVT, TextViT-Lite and the text Transformer,
from one :class:`~cct_fast.core.text_config.TextConfig`."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from cct_fast.compute import DEFAULT_IMPLEMENTATION
from cct_fast.core.config import config_arguments
from cct_fast.core.encoder_classifier import EncoderClassifier
from cct_fast.core.layers.text import SequencePositions, TextTokenizer, WordEmbedding
from cct_fast.core.text_config import TextConfig


@keras.saving.register_keras_serializable(package="cct_fast")
class TextCCT(EncoderClassifier):
    """A text classifier of the official ``src/text/`` family.

    Input: ``(token_ids, mask)``, both (batch, seq_len): integer ids and a mask that is true
    (or 1) on real words and false on padding. Output: logits (batch, num_classes), or the
    pooled features with ``include_top=False``. The encoder layers, sequence pooling and head
    are the image models' layers; attention is masked, so that no real token attends to
    padding. Sequence pooling is not masked, as in the official code.

    Args:
        vocab_size, word_embedding_dim, padding_idx: the word embedding (the official
            ``Embedder``: 100,000 x 300, padding id 1).
        seq_len: words per example.
        tokenizer: ``"convolutional"`` (TextCCT), ``"patch"`` (TextCVT, TextViT-Lite) or
            ``"none"`` (the text Transformer: the words are the tokens).
        embedding_dim: the encoder's width (the Transformer's is ``word_embedding_dim``).
        kernel_size, stride, padding, pooling_kernel_size, pooling_stride, pooling_padding:
            the tokenizer (:class:`~cct_fast.core.text_config.TextConfig` derives the
            official strides and paddings).
        dropout, attention_dropout, stochastic_depth, num_layers, num_heads, mlp_ratio:
            the encoder.
        num_classes: classes of the head.
        positional_embedding: ``"sine"`` (default), ``"learnable"`` or ``"none"``.
        seq_pool: sequence pooling; False uses a class token (ViT-Lite, Transformer).
        include_top, classifier_activation, jit_compile, implementation, name, dtype: as for
            :class:`cct_fast.CCT`.
    """

    def __init__(
        self,
        vocab_size: int = 100_000,
        word_embedding_dim: int = 300,
        padding_idx: int = 1,
        seq_len: int = 64,
        tokenizer: str = "convolutional",
        embedding_dim: int = 256,
        kernel_size: int = 4,
        stride: int | None = None,
        padding: int | None = None,
        pooling_kernel_size: int = 2,
        pooling_stride: int = 2,
        pooling_padding: int = 1,
        dropout: float = 0.0,
        attention_dropout: float = 0.1,
        stochastic_depth: float = 0.1,
        num_layers: int = 2,
        num_heads: int = 2,
        mlp_ratio: float = 1.0,
        num_classes: int = 4,
        positional_embedding: str = "sine",
        seq_pool: bool = True,
        *,
        include_top: bool = True,
        classifier_activation: str | None = None,
        jit_compile: bool = False,
        implementation: str = DEFAULT_IMPLEMENTATION,
        name: str = "text_cct",
        **kwargs,
    ):
        config = TextConfig(**config_arguments(TextConfig, locals()))
        super().__init__(config, name=name, **kwargs)

        policy = self.dtype_policy
        self.word_embedding = WordEmbedding(
            vocab_size, word_embedding_dim, padding_idx, name="word_embedding", dtype=policy
        )
        self.tokenizer = None
        if tokenizer != "none":
            convolutional = tokenizer == "convolutional"
            self.tokenizer = TextTokenizer(
                config.width,
                kernel_size,
                config.conv_stride,
                config.conv_padding,
                activation="relu" if convolutional else None,
                max_pool=convolutional,
                pooling_kernel_size=pooling_kernel_size,
                pooling_stride=pooling_stride,
                pooling_padding=pooling_padding,
                name="tokenizer",
                dtype=policy,
            )
        self._add_class_token()
        self.positions = None
        if positional_embedding != "none":
            self.positions = SequencePositions(
                positional_embedding,
                config.sequence_length + config.num_prefix_tokens,
                name="positions",
                dtype=policy,
            )
        self._add_encoder(include_top, classifier_activation, jit_compile, implementation)
        self.build((None, seq_len))

    def build(self, input_shape):
        config = self.config
        ids_shape = (None, config.seq_len)
        self.word_embedding.build(ids_shape, ids_shape)
        tokens = (None, config.sequence_length, config.width)
        if self.tokenizer is not None:
            self.tokenizer.build((None, config.seq_len, config.word_embedding_dim), ids_shape)
        if self.class_token is not None:
            self.class_token.build(tokens)
            tokens = self.class_token.compute_output_shape(tokens)
        if self.positions is not None:
            self.positions.build(tokens)
        self._build_encoder(tokens)

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras, which refuses a Python string or a list of them as "not a tensor".
        self._refuse_texts(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """Keras' ``predict``, with ``(token_ids, mask)`` arrays checked first as a call checks
        them: inside the traced step an id outside the vocabulary is only a GatherV2 error on
        the CPU, and a silent zero row on a GPU."""
        if isinstance(x, (list, tuple, dict)):
            self._ids_and_mask(x)
        return super().predict(x, *args, **kwargs)

    def call(self, inputs, training=False):
        ids, mask = self._ids_and_mask(inputs)
        x = self.word_embedding(ids, mask)
        token_mask = ops.cast(mask, "bool")
        if self.tokenizer is not None:
            x, token_mask = self.tokenizer(x, token_mask)
        if self.class_token is not None:
            x = self.class_token(x)
            real = ops.ones_like(token_mask[:, :1])
            token_mask = ops.concatenate([real, token_mask], axis=1)
        if self.positions is not None:
            x = self.positions(x)
        return self._classify(x, training=training, token_mask=token_mask)

    def _refuse_texts(self, inputs):
        if _holds_strings(inputs):
            raise TypeError(
                f"{self.name} takes token ids, not texts: tokenize them first with the run's "
                "TextEncoder (encoder(texts) gives (token_ids, mask))."
            )

    def _ids_and_mask(self, inputs):
        """``(token_ids, mask)`` from a pair or a dict with those keys, checked."""
        if isinstance(inputs, dict):
            inputs = (inputs.get("token_ids"), inputs.get("mask"))
        self._refuse_texts(inputs)
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise TypeError(
                f"{self.name} takes (token_ids, mask), each (batch, {self.config.seq_len}), or a "
                f"dict with those keys; got {type(inputs).__name__}."
            )
        ids, mask = inputs
        expected = self.config.seq_len
        for what, value in (("token_ids", ids), ("mask", mask)):
            shape = tuple(value.shape)
            if len(shape) != 2 or shape[1] not in (None, expected):
                raise ValueError(
                    f"{self.name} expects {what} of shape (batch, {expected}); got {shape}. "
                    "Pad or truncate each example to seq_len words."
                )
        if not keras.backend.standardize_dtype(ids.dtype).startswith(("int", "uint")):
            raise TypeError(f"{self.name} expects integer token ids; got {ids.dtype}.")
        if not keras.backend.standardize_dtype(mask.dtype).startswith(("bool", "int", "uint")):
            raise TypeError(
                f"{self.name} expects a boolean (or 0/1 integer) mask; got {mask.dtype}."
            )
        values = _concrete(ids)
        vocab_size = self.config.vocab_size
        if (
            values is not None
            and values.size
            and not 0 <= values.min() <= values.max() < vocab_size
        ):
            raise ValueError(
                f"{self.name} has a vocabulary of {vocab_size} ids; got token ids from "
                f"{values.min()} to {values.max()}. Encode texts with the vocabulary the model "
                "was built for (vocab_size=encoder.vocab_size)."
            )
        return ids, mask


def _holds_strings(inputs):
    """Whether ``inputs`` are texts: a string, or a list, tuple or tensor of them."""
    first = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
    if isinstance(first, (str, bytes)):
        return True
    dtype = getattr(first, "dtype", None)
    if dtype is None:
        return False
    return getattr(dtype, "kind", None) in ("U", "S", "O") or str(dtype) in (
        "string",
        "<dtype: 'string'>",
    )


def _concrete(tensor):
    """The values of an eager tensor or array; None inside a traced function, where they
    are not known (an out-of-range id then fails in the embedding lookup on the CPU)."""
    try:
        return np.asarray(tensor)
    except Exception:  # symbolic tensors refuse in several ways
        return None
