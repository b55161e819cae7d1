"""Initialisers that draw from the same distributions as the official PyTorch code."""

import math

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="cct_fast")
class TorchTruncatedNormal(keras.initializers.Initializer):
    """``torch.nn.init.trunc_normal_``: a normal cut at the *absolute* bounds ``[lower, upper]``.

    ``keras.initializers.TruncatedNormal`` cuts at two standard deviations, which shrinks the
    spread by 12 %. PyTorch's bounds default to [-2, 2], far beyond the standard deviations
    the official code uses (0.02 for weights, 0.2 for positional embeddings), so this is a
    plain normal kept inside the bounds.
    """

    def __init__(self, stddev=0.02, lower=-2.0, upper=2.0, seed=None):
        self.stddev = stddev
        self.lower = lower
        self.upper = upper
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    def __call__(self, shape, dtype=None):
        values = keras.random.normal(
            shape, stddev=self.stddev, dtype=dtype, seed=self._seed_generator
        )
        return keras.ops.clip(values, self.lower, self.upper)

    def get_config(self):
        return {"stddev": self.stddev, "lower": self.lower, "upper": self.upper, "seed": self.seed}


def he_normal_untruncated(seed=None):
    """``torch.nn.init.kaiming_normal_`` (fan-in, ReLU gain): an untruncated normal.

    ``keras.initializers.HeNormal`` draws a truncated normal instead.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal", seed=seed
    )


def torch_default_bias(fan_in, seed=None):
    """PyTorch's default bias initialisation of ``nn.Conv2d``: uniform in ±1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


def sinusoidal_table(num_positions: int, dim: int) -> np.ndarray:
    """The official sine positional table: sine on even channels, cosine on odd ones.

    Position ``p``, channel ``i`` holds ``p / 10000 ** (2 * (i // 2) / dim)`` before the sine
    or cosine; computed in float64 and rounded once to float32, as ``torch.FloatTensor`` does.
    """
    positions = np.arange(num_positions, dtype=np.float64)[:, None]
    channels = np.arange(dim)
    angles = positions / np.power(10000.0, 2 * (channels // 2) / dim)
    table = np.where(channels % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)[None]


@keras.saving.register_keras_serializable(package="cct_fast")
class SinusoidalTable(keras.initializers.Initializer):
    """Fills a ``(1, num_positions, dim)`` weight with :func:`sinusoidal_table`."""

    def __call__(self, shape, dtype=None):
        _, num_positions, dim = shape
        return keras.ops.convert_to_tensor(sinusoidal_table(num_positions, dim), dtype=dtype)

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="cct_fast")
class PaddedSinusoidalTable(keras.initializers.Initializer):
    """Fills a ``(1, 1 + num_positions, dim)`` weight with a row of zeros (the official text
    models' padding row), then :func:`sinusoidal_table`."""

    def __call__(self, shape, dtype=None):
        _, rows, dim = shape
        table = np.concatenate(
            [np.zeros((1, 1, dim), np.float32), sinusoidal_table(rows - 1, dim)], 1
        )
        return keras.ops.convert_to_tensor(table, dtype=dtype)

    def get_config(self):
        return {}
