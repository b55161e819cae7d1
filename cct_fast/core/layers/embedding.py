"""Positional embeddings (learnable or the official sine table) and the ViT-Lite class token."""

import logging

import keras
import numpy as np
from keras import ops

from cct_fast.core.config import as_pair
from cct_fast.core.layers.initializers import SinusoidalTable, TorchTruncatedNormal
from cct_fast.errors import CheckpointError, ConfigError

_LOGGER = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="cct_fast")
class PositionalEmbedding(keras.layers.Layer):
    """Adds a ``(1, num_prefix_tokens + rows * columns, dim)`` positional embedding to the
    tokens of a ``grid_size`` token grid (a side, or ``(rows, columns)``).

    ``kind="learnable"`` is a trainable weight drawn with std 0.2; ``kind="sine"`` is the
    official sine table, a non-trainable weight (it is in the official state dicts too).
    Loading a learnable embedding made for another image size resizes its token grid
    bilinearly, as the official ``pe_check`` does.
    """

    def __init__(self, kind, grid_size, num_prefix_tokens=0, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("learnable", "sine"):
            raise ConfigError(
                f"PositionalEmbedding kind must be 'learnable' or 'sine', got {kind!r}."
            )
        self.kind = kind
        self.grid_size = tuple(grid_size) if isinstance(grid_size, (list, tuple)) else grid_size
        self.num_prefix_tokens = num_prefix_tokens

    @property
    def grid(self):
        """``(rows, columns)`` of the token grid."""
        return as_pair(self.grid_size)

    @property
    def num_positions(self):
        return self.num_prefix_tokens + self.grid[0] * self.grid[1]

    def build(self, input_shape):
        learnable = self.kind == "learnable"
        self.embedding = self.add_weight(
            shape=(1, self.num_positions, input_shape[-1]),
            initializer=TorchTruncatedNormal(stddev=0.2) if learnable else SinusoidalTable(),
            trainable=learnable,
            name="embedding",
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def load_own_variables(self, store):
        stored = np.asarray(store["0"])
        expected = tuple(self.embedding.shape)
        if stored.shape != expected:
            if stored.ndim != 3 or stored.shape[0] != 1 or stored.shape[2] != expected[2]:
                raise CheckpointError(
                    f"Positional embedding of shape {stored.shape} cannot be loaded into "
                    f"{self.path!r} of shape {expected}: the embedding width differs."
                )
            if self.kind == "sine":
                # The sine table is a function of its length alone: keep our own.
                return
            _LOGGER.info("Resizing positional embedding %s -> %s.", stored.shape, expected)
            stored = resize_positional_embedding(stored, self.grid, self.num_prefix_tokens)
        self.embedding.assign(stored)

    def get_config(self):
        return {
            **super().get_config(),
            "kind": self.kind,
            "grid_size": self.grid_size,
            "num_prefix_tokens": self.num_prefix_tokens,
        }


def resize_positional_embedding(embedding, grid, num_prefix_tokens=0):
    """Resize a ``(1, prefix + g**2, dim)`` embedding of a square token grid to a ``grid`` of
    ``(rows, columns)`` (or a side).

    Bilinear with half-pixel centres and no antialiasing, which is PyTorch's
    ``F.interpolate(mode="bilinear", align_corners=False)`` used by the official ``pe_check``;
    the prefix (class-token) positions are kept as they are.
    """
    import tensorflow as tf

    rows, columns = as_pair(grid)
    embedding = np.asarray(embedding)
    prefix, tokens = embedding[:, :num_prefix_tokens], embedding[0, num_prefix_tokens:]
    old_side = int(round(np.sqrt(tokens.shape[0])))
    if old_side * old_side != tokens.shape[0]:
        raise CheckpointError(
            f"Cannot resize a positional embedding of {tokens.shape[0]} image tokens: "
            "it is not a square grid."
        )
    tokens = tokens.reshape(1, old_side, old_side, -1)
    resized = tf.image.resize(tokens, (rows, columns), method="bilinear", antialias=False)
    resized = np.asarray(resized, dtype=embedding.dtype).reshape(1, rows * columns, -1)
    return np.concatenate([prefix, resized], axis=1)


@keras.saving.register_keras_serializable(package="cct_fast")
class ClassToken(keras.layers.Layer):
    """Prepends one learnable token (zeros at start, as in the official ViT-Lite)."""

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]), initializer="zeros", name="token"
        )

    def call(self, tokens):
        token = ops.cast(self.token, tokens.dtype)
        batch = ops.shape(tokens)[0]
        return ops.concatenate(
            [ops.broadcast_to(token, (batch, 1, token.shape[-1])), tokens], axis=1
        )

    def compute_output_shape(self, input_shape):
        batch, tokens, dim = input_shape
        return (batch, None if tokens is None else tokens + 1, dim)
