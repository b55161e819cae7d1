"""One configuration type for the text models: TextCCT, TextCVT, TextViT-Lite and the text
Transformer of the official ``src/text/``.

Token ids are looked up in a word embedding (``word_embedding_dim`` 300, as the official
``Embedder``), then, except in the Transformer, turned into tokens by a convolution over the
sequence: ``kernel_size`` words at a time with ReLU and a max-pool for CCT, ``kernel_size``
words per patch for CVT and ViT-Lite. The encoder is the image models' with a masked
attention.

Two points deviate from the official code, which does not run at its defaults: its positional
table has one leading row more than the tokens (a padding row, zeros in the sine table) and
``x += positional_emb`` fails; here row 0 is that padding row and the tokens take rows 1..T.
And its tokenizer returns the mask as (batch, tokens, 1) floats, which its attention refuses;
here the mask is (batch, tokens) boolean.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from cct_fast.core.config import EncoderConfig, stage_output_size


@dataclasses.dataclass(frozen=True)
class TextConfig(EncoderConfig):
    """The shared encoder fields at the official text builders' defaults, and the words in."""

    TOKENIZERS: ClassVar[tuple[str, ...]] = ("convolutional", "patch", "none")
    KIND: ClassVar[str] = "text model"
    POSITIVE: ClassVar[tuple[str, ...]] = ("vocab_size", "word_embedding_dim", "seq_len")

    embedding_dim: int = 256
    kernel_size: int = 4
    pooling_kernel_size: int = 2
    pooling_stride: int = 2
    pooling_padding: int = 1
    num_layers: int = 2
    num_heads: int = 2
    mlp_ratio: float = 1.0
    num_classes: int = 4
    positional_embedding: str = "sine"
    vocab_size: int = 100_000
    word_embedding_dim: int = 300
    padding_idx: int = 1
    seq_len: int = 64

    @property
    def width_field(self) -> str:
        """``embedding_dim``, or the word embedding's width for the Transformer, which has no
        tokenizer to change it."""
        return "word_embedding_dim" if self.tokenizer == "none" else "embedding_dim"

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if problems:
            return problems
        if self.tokenizer == "patch" and self.seq_len % self.kernel_size:
            problems.append(
                f"seq_len {self.seq_len} must be a multiple of the patch size {self.kernel_size}"
            )
        elif self.sequence_length < 1:
            problems.append(f"seq_len {self.seq_len} leaves no token after the tokenizer")
        return problems

    @property
    def sequence_length(self) -> int:
        """Tokens the encoder sees from ``seq_len`` words (a class token not counted)."""
        if self.tokenizer == "none":
            return self.seq_len
        return self.tokenizer_stage[1]

    @property
    def tokenizer_stage(self) -> tuple[int, int]:
        """(length after the convolution, after the max-pool) of the ``seq_len`` words."""
        return stage_output_size(
            self.seq_len, self.kernel_size, self.conv_stride, self.conv_padding, self.pooling
        )
