"""What a forward pass of one image costs, counted from the configuration alone.

Multiply-accumulates are counted as the official README counts them, convolutions and linear
layers only, and also with the two attention matmuls (scores and weighted sum), which that
count leaves out although they grow with the square of the sequence length.
"""

from __future__ import annotations

import dataclasses

from cct_fast.core.config import CCTConfig
from cct_fast.core.text_config import TextConfig


@dataclasses.dataclass(frozen=True)
class Costs:
    convolutions: int  # the tokenizer's
    linears: int  # the encoder's, sequence pooling's and the head's
    attention_matmuls: int  # q k^T and weights v

    @property
    def official_macs(self) -> int:
        """Convolutions and linear layers, as the official figures count them."""
        return self.convolutions + self.linears

    @property
    def macs(self) -> int:
        """Everything: the official count and the attention matmuls."""
        return self.official_macs + self.attention_matmuls


def costs(config: CCTConfig | TextConfig, include_top: bool = True) -> Costs:
    """Multiply-accumulates of one image (or one text of ``seq_len`` words) through
    ``config``'s model; a text model's word lookup costs none."""
    if isinstance(config, TextConfig):
        convolutions, dim = _text_tokenizer(config), config.width
    else:
        convolutions, dim = _image_tokenizer(config), config.embedding_dim
    tokens = config.sequence_length + config.num_prefix_tokens
    hidden = config.feedforward_dim
    per_layer = tokens * (3 * dim * dim + dim * dim + 2 * dim * hidden)
    linears = config.num_layers * per_layer
    if config.seq_pool:
        linears += tokens * dim
    if include_top:
        linears += dim * config.num_classes
    attention = config.num_layers * 2 * tokens * tokens * dim
    return Costs(convolutions, linears, attention)


def _image_tokenizer(config):
    macs, channels = 0, config.n_input_channels
    sizes = [config.tokenizer_stages(side) for side in config.image_size]
    widths = [config.in_planes] * (config.conv_layers - 1) + [config.embedding_dim]
    for (height, _), (width, _), filters in zip(*sizes, widths, strict=True):
        macs += height * width * filters * channels * config.kernel_size**2
        channels = filters
    return macs


def _text_tokenizer(config):
    if config.tokenizer == "none":
        return 0
    length = config.tokenizer_stage[0]
    return length * config.kernel_size * config.word_embedding_dim * config.width
