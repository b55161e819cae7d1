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

from cct_fast.core.config import linear_rates, stage_output_size
from cct_fast.errors import ConfigError

TEXT_TOKENIZERS = ("convolutional", "patch", "none")
_POSITIVE_INTEGERS = (
    "vocab_size",
    "word_embedding_dim",
    "seq_len",
    "kernel_size",
    "num_layers",
    "num_heads",
    "num_classes",
)


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 100_000
    word_embedding_dim: int = 300
    padding_idx: int = 1
    seq_len: int = 64
    tokenizer: str = "convolutional"
    embedding_dim: int = 256
    kernel_size: int = 4
    stride: int | None = None  # convolutional: max(1, k // 2 - 1); patch: k
    padding: int | None = None  # convolutional: max(1, k // 2); patch: 0
    pooling_kernel_size: int = 2
    pooling_stride: int = 2
    pooling_padding: int = 1
    dropout: float = 0.0
    attention_dropout: float = 0.1
    stochastic_depth: float = 0.1
    num_layers: int = 2
    num_heads: int = 2
    mlp_ratio: float = 1.0
    num_classes: int = 4
    positional_embedding: str = "sine"
    seq_pool: bool = True

    def __post_init__(self):
        problems = []
        if self.tokenizer not in TEXT_TOKENIZERS:
            problems.append(f"tokenizer must be one of {TEXT_TOKENIZERS}, got {self.tokenizer!r}")
        if self.positional_embedding not in ("learnable", "sine", "none"):
            problems.append(
                "positional_embedding must be 'learnable', 'sine' or 'none', got "
                f"{self.positional_embedding!r}"
            )
        for name in _POSITIVE_INTEGERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not problems and self.width % self.num_heads:
            problems.append(f"width {self.width} is not divisible by num_heads={self.num_heads}")
        if not problems and self.tokenizer == "patch" and self.seq_len % self.kernel_size:
            problems.append(
                f"seq_len {self.seq_len} must be a multiple of the patch size {self.kernel_size}"
            )
        if not problems and self.sequence_length < 1:
            problems.append(f"seq_len {self.seq_len} leaves no token after the tokenizer")
        if problems:
            raise ConfigError("Invalid text model configuration: " + "; ".join(problems) + ".")

    @property
    def width(self) -> int:
        """The encoder's width: ``embedding_dim``, or the word embedding's for the Transformer."""
        return self.word_embedding_dim if self.tokenizer == "none" else self.embedding_dim

    @property
    def conv_stride(self) -> int:
        if self.stride is not None:
            return self.stride
        return self.kernel_size if self.tokenizer == "patch" else max(1, self.kernel_size // 2 - 1)

    @property
    def conv_padding(self) -> int:
        if self.padding is not None:
            return self.padding
        return 0 if self.tokenizer == "patch" else max(1, self.kernel_size // 2)

    @property
    def max_pool(self) -> bool:
        return self.tokenizer == "convolutional"

    @property
    def sequence_length(self) -> int:
        """Tokens the encoder sees from ``seq_len`` words (a class token not counted)."""
        if self.tokenizer == "none":
            return self.seq_len
        return self.tokenizer_stage[1]

    @property
    def tokenizer_stage(self) -> tuple[int, int]:
        """(length after the convolution, after the max-pool) of the ``seq_len`` words."""
        pooling = (self.pooling_kernel_size, self.pooling_stride, self.pooling_padding)
        return stage_output_size(
            self.seq_len,
            self.kernel_size,
            self.conv_stride,
            self.conv_padding,
            pooling if self.max_pool else None,
        )

    @property
    def num_prefix_tokens(self) -> int:
        return 0 if self.seq_pool else 1

    @property
    def feedforward_dim(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def drop_path_rates(self) -> list[float]:
        return linear_rates(self.stochastic_depth, self.num_layers)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
