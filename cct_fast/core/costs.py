"""What a model costs, counted from the configuration alone, before anything is built.

Multiply-accumulates of one forward pass are counted as the official README counts them,
convolutions and linear layers only, and also with the two attention matmuls (scores and
weighted sum), which that count leaves out although they grow with the square of the
sequence length. The weights' element count and the memory one example needs let a model
that cannot fit be refused before TensorFlow tries to allocate it.
"""

from __future__ import annotations

import dataclasses
import os

from cct_fast.core.config import CCTConfig
from cct_fast.core.text_config import TextConfig
from cct_fast.errors import ConfigError


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


def weight_count(config: CCTConfig | TextConfig, include_top: bool = True) -> int:
    """Elements of every weight of ``config``'s model: ``model.count_params()`` before the
    model exists."""
    if isinstance(config, TextConfig):
        dim = config.width
        count = config.vocab_size * config.word_embedding_dim
        if config.tokenizer != "none":  # one convolution over the words, no bias
            count += config.kernel_size * config.word_embedding_dim * dim
        table_rows = 1  # the padding row ahead of the tokens
    else:
        dim = config.embedding_dim
        channels, count = config.n_input_channels, 0
        widths = [config.in_planes] * (config.conv_layers - 1) + [dim]
        for filters in widths:
            count += config.kernel_size**2 * channels * filters
            count += filters if config.tokenizer == "patch" else 0  # a bias
            channels = filters
        table_rows = 0
    tokens = config.sequence_length + config.num_prefix_tokens
    if config.positional_embedding != "none":
        count += (tokens + table_rows) * dim
    count += config.num_prefix_tokens * dim
    hidden = config.feedforward_dim
    per_layer = 4 * dim * dim + dim + 2 * dim * hidden + hidden + dim + 4 * dim
    count += config.num_layers * per_layer + 2 * dim
    if config.seq_pool:
        count += dim + 1
    if include_top:
        count += (dim + 1) * config.num_classes
    return count


def memory_floor(config: CCTConfig | TextConfig, examples: int = 1, training: bool = False) -> int:
    """Bytes that ``config``'s model cannot run in less: its float32 weights (four times over in
    training: gradients and Adam's two moments), and for ``examples`` at once the attention
    scores of one layer (heads x tokens x tokens)."""
    tokens = config.sequence_length + config.num_prefix_tokens
    scores = examples * config.num_heads * tokens * tokens
    return 4 * ((4 if training else 1) * weight_count(config) + scores)


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(
    config: CCTConfig | TextConfig, what: str, examples: int = 1, training: bool = False
) -> None:
    """Refuse, before anything is allocated, a model whose :func:`memory_floor` is more than
    this machine's memory (``embedding_dim=10**6``, an image side of 100,000, a batch of
    texts of 100,000 words)."""
    needed, available = memory_floor(config, examples, training), physical_memory()
    if available is None or needed <= available:
        return
    batch = f"a batch of {examples:,}" if examples > 1 else "one example"
    raise ConfigError(
        f"{what} cannot {'train' if training else 'run'} in this machine's memory: "
        f"{weight_count(config):,} weights{' with their optimizer state' if training else ''} "
        f"and the attention scores of {batch} over {config.sequence_length:,} tokens need at "
        f"least {needed / 2**30:,.1f} GiB, and it has {available / 2**30:,.1f} GiB. Choose a "
        f"smaller {'batch, ' if examples > 1 else ''}width, depth, image size or seq_len."
    )
