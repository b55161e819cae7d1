"""The model configurations: :class:`EncoderConfig`, what every model here shares, and
:class:`CCTConfig` for the image models, CCT, CVT and ViT-Lite.

The field names and defaults are those of the official ``CCT`` class
(SHI-Labs/Compact-Transformers, ``src/cct.py``). CVT and ViT-Lite are the same network
with a patch tokenizer (one strided convolution with bias, no activation, no pooling);
ViT-Lite also replaces sequence pooling by a class token.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from cct_fast.errors import ConfigError

POSITIONAL_EMBEDDINGS = ("learnable", "sine", "none")


def as_pair(size) -> tuple[int, int]:
    """A side or a ``(height, width)`` pair (or list, as a saved config gives it back), as a
    pair."""
    return tuple(size) if isinstance(size, (tuple, list)) else (size, size)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a PyTorch convolution or max-pool (floor mode) along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def stage_output_size(size, kernel, stride, padding, pooling=None):
    """(length after a convolution, length after the max-pool that follows it) along one axis;
    ``pooling`` is the pool's (kernel, stride, padding), or None for none (both lengths are
    then the same). An unknown ``size`` (None) stays unknown."""
    if size is None:
        return None, None
    size = conv_output_size(size, kernel, stride, padding)
    return size, size if pooling is None else conv_output_size(size, *pooling)


def linear_rates(last: float, count: int) -> list[float]:
    """Stochastic depth rising linearly from 0 to ``last`` over ``count`` layers, as the
    official ``torch.linspace(0, stochastic_depth, num_layers)``."""
    if count == 1:
        return [0.0]
    return [i * last / (count - 1) for i in range(count)]


def config_arguments(config_type, arguments) -> dict:
    """The fields of ``config_type`` taken from a model constructor's ``arguments`` (its
    ``locals()``), so that the constructor names each field once, in its signature."""
    return {field.name: arguments[field.name] for field in dataclasses.fields(config_type)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """What the image and the text models share: a tokenizer (a convolution with ReLU and a
    max-pool for CCT, patches for CVT and ViT-Lite), the transformer encoder, and sequence
    pooling or a class token into the head. The names and defaults are those of the official
    ``CCT`` class; :class:`CCTConfig` and :class:`~cct_fast.core.text_config.TextConfig` add
    their inputs. A configuration with problems is refused with all of them in one
    :class:`ConfigError`."""

    TOKENIZERS: ClassVar[tuple[str, ...]] = ("convolutional", "patch")
    KIND: ClassVar[str] = "CCT"  # how the error names the configuration
    # Fields that must be positive integers, besides the shared ones.
    POSITIVE: ClassVar[tuple[str, ...]] = ()

    tokenizer: str = "convolutional"
    embedding_dim: int = 768
    kernel_size: int = 7
    stride: int | None = None
    padding: int | None = None
    pooling_kernel_size: int = 3
    pooling_stride: int = 2
    pooling_padding: int = 1
    dropout: float = 0.0
    attention_dropout: float = 0.1
    stochastic_depth: float = 0.1
    num_layers: int = 14
    num_heads: int = 6
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    positional_embedding: str = "learnable"
    seq_pool: bool = True

    def __post_init__(self):
        problems = self._problems()
        if problems:
            raise ConfigError(f"Invalid {self.KIND} configuration: {'; '.join(problems)}.")

    def _problems(self) -> list[str]:
        """What is wrong, each with the value given; the checks that combine fields only run
        once every field is well-formed."""
        problems = []
        if self.tokenizer not in self.TOKENIZERS:
            problems.append(f"tokenizer must be one of {self.TOKENIZERS}, got {self.tokenizer!r}")
        if self.positional_embedding not in POSITIONAL_EMBEDDINGS:
            problems.append(
                f"positional_embedding must be one of {POSITIONAL_EMBEDDINGS}, "
                f"got {self.positional_embedding!r}"
            )
        positive = (
            "embedding_dim",
            "kernel_size",
            "num_layers",
            "num_heads",
            "num_classes",
            "pooling_kernel_size",
            "pooling_stride",
            *self.POSITIVE,
        )
        for field in positive + (() if self.stride is None else ("stride",)):
            value = getattr(self, field)
            if not _is_int(value) or value < 1:
                problems.append(f"{field} must be a positive integer, got {value!r}")
        for field in ("padding", "pooling_padding"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 0):
                problems.append(f"{field} must be a non-negative integer, got {value!r}")
        for field in ("dropout", "attention_dropout", "stochastic_depth"):
            value = getattr(self, field)
            if not 0.0 <= value < 1.0:
                problems.append(f"{field} must be in [0, 1), got {value!r}")
        if problems:
            return problems
        if self.mlp_ratio <= 0 or self.feedforward_dim < 1:
            problems.append(f"mlp_ratio must give at least one hidden unit, got {self.mlp_ratio!r}")
        if self.width % self.num_heads:
            problems.append(
                f"{self.width_field} ({self.width}) must be divisible by num_heads "
                f"({self.num_heads})"
            )
        return problems

    @property
    def width_field(self) -> str:
        """The field that sets the encoder's width."""
        return "embedding_dim"

    @property
    def width(self) -> int:
        """The encoder's width."""
        return getattr(self, self.width_field)

    # stride and padding stay None in the config when not given, so that a copy with another
    # kernel_size (``replace``) derives them anew, as the official ``_cct`` helper does.
    @property
    def conv_stride(self) -> int:
        if self.stride is not None:
            return self.stride
        if self.tokenizer == "patch":
            return self.kernel_size
        return max(1, self.kernel_size // 2 - 1)

    @property
    def conv_padding(self) -> int:
        if self.padding is not None:
            return self.padding
        if self.tokenizer == "patch":
            return 0
        return max(1, self.kernel_size // 2)

    @property
    def max_pool(self) -> bool:
        return self.tokenizer == "convolutional"

    @property
    def pooling(self) -> tuple[int, int, int] | None:
        """The tokenizer's max-pool as (kernel, stride, padding); None without one."""
        if not self.max_pool:
            return None
        return (self.pooling_kernel_size, self.pooling_stride, self.pooling_padding)

    @property
    def feedforward_dim(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the input's tokens: ViT-Lite's class token; none with sequence
        pooling."""
        return 0 if self.seq_pool else 1

    @property
    def drop_path_rates(self) -> list[float]:
        return linear_rates(self.stochastic_depth, self.num_layers)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CCTConfig(EncoderConfig):
    """CCT, CVT and ViT-Lite: the field names and defaults of the official ``CCT`` class."""

    POSITIVE: ClassVar[tuple[str, ...]] = ("n_input_channels", "n_conv_layers", "in_planes")

    img_size: int | tuple[int, int] = 224  # a side, or (height, width): the official is square
    n_input_channels: int = 3
    n_conv_layers: int = 1
    in_planes: int = 64

    def __post_init__(self):
        if isinstance(self.img_size, list):  # as a serialized config gives it back
            object.__setattr__(self, "img_size", tuple(self.img_size))
        super().__post_init__()

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the images."""
        return as_pair(self.img_size)

    def _problems(self) -> list[str]:
        problems = super()._problems()
        sides = self.img_size if isinstance(self.img_size, tuple) else (self.img_size,)
        if len(sides) not in (1, 2) or not all(_is_int(side) and side >= 1 for side in sides):
            problems.append(
                f"img_size must be a positive integer or a (height, width) pair of them, got "
                f"{self.img_size!r}"
            )
        if problems:
            return problems
        if self.tokenizer == "patch" and any(side % self.kernel_size for side in sides):
            problems.append(
                f"img_size ({self.img_size}) must be divisible by the patch size "
                f"kernel_size ({self.kernel_size})"
            )
        elif min(self.token_grid) < 1:
            problems.append(
                f"img_size {self.img_size} is too small for the tokenizer "
                f"(kernel {self.kernel_size}, stride {self.conv_stride}, "
                f"{self.n_conv_layers} layer(s))"
            )
        return problems

    @property
    def conv_layers(self) -> int:
        """Convolutions in the tokenizer: ``n_conv_layers``, or one for the patch tokenizer."""
        return self.n_conv_layers if self.tokenizer == "convolutional" else 1

    def tokenizer_stages(self, size: int) -> list[tuple[int, int]]:
        """(length after the convolution, length after the max-pool) of each tokenizer stage
        along an image axis of ``size`` pixels; without pooling both are the same."""
        stages = []
        for _ in range(self.conv_layers):
            stage = stage_output_size(
                size, self.kernel_size, self.conv_stride, self.conv_padding, self.pooling
            )
            stages.append(stage)
            size = stage[1]
        return stages

    @property
    def token_grid(self) -> tuple[int, int]:
        """``(rows, columns)`` of the tokens the tokenizer makes from an ``img_size`` image."""
        return tuple(self.tokenizer_stages(side)[-1][1] for side in self.image_size)

    @property
    def sequence_length(self) -> int:
        """Tokens the tokenizer makes from an ``img_size`` image (the class token not counted)."""
        rows, columns = self.token_grid
        return rows * columns
