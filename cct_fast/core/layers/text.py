"""The layers that turn token ids into the encoder's tokens: the word embedding, the text
tokenizer (a convolution over the sequence) and the positional table with its padding row."""

import keras
from keras import ops

from cct_fast.core.config import stage_output_size
from cct_fast.core.layers.initializers import (
    PaddedSinusoidalTable,
    TorchTruncatedNormal,
    he_normal_untruncated,
)
from cct_fast.errors import ConfigError


@keras.saving.register_keras_serializable(package="cct_fast")
class WordEmbedding(keras.layers.Layer):
    """Token ids (batch, words) and their mask -> (batch, words, dim) vectors, zero where the
    mask is, as the official ``Embedder``. The table starts as PyTorch's ``nn.Embedding``
    does: a standard normal, with row ``padding_idx`` at zero. (PyTorch also keeps that row out
    of the gradient; here padding is masked, so its row gets none either.)"""

    def __init__(self, vocab_size, dim, padding_idx=1, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.dim = dim
        self.padding_idx = padding_idx

    def build(self, ids_shape, mask_shape=None):
        self.table = self.add_weight(
            shape=(self.vocab_size, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="table",
        )
        if 0 <= self.padding_idx < self.vocab_size:
            rows = ops.arange(self.vocab_size)[:, None]
            self.table.assign(ops.where(rows == self.padding_idx, 0.0, self.table))

    def call(self, ids, mask):
        vectors = ops.take(self.table, ids, axis=0)
        return vectors * ops.cast(mask, vectors.dtype)[..., None]

    def compute_output_shape(self, ids_shape, mask_shape=None):
        return (*ids_shape, self.dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "dim": self.dim,
            "padding_idx": self.padding_idx,
        }


@keras.saving.register_keras_serializable(package="cct_fast")
class TextTokenizer(keras.layers.Layer):
    """(batch, words, word dim) vectors and their mask -> (batch, tokens, filters) tokens and
    the tokens' mask, as the official ``TextTokenizer``: one convolution over ``kernel_size``
    words (stride ``stride``, ``padding`` zero words on each end, no bias), then
    ``activation`` and a max-pool over the sequence if asked. A token is real where its window
    covered a real word; the tokens that are not are zeroed."""

    def __init__(
        self,
        filters,
        kernel_size,
        stride,
        padding,
        activation="relu",
        max_pool=True,
        pooling_kernel_size=2,
        pooling_stride=2,
        pooling_padding=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.max_pool = max_pool
        self.pooling_kernel_size = pooling_kernel_size
        self.pooling_stride = pooling_stride
        self.pooling_padding = pooling_padding
        self.conv = keras.layers.Conv1D(
            filters,
            kernel_size,
            strides=stride,
            padding="valid",
            use_bias=False,
            kernel_initializer=he_normal_untruncated(),
            name="conv",
            dtype=self.dtype_policy,
        )

    def build(self, vectors_shape, mask_shape=None):
        self.conv.build((None, None, vectors_shape[-1]))

    def call(self, vectors, mask):
        x = self.activation(self.conv(_pad_words(vectors, self.padding, 0.0)))
        # The mask follows the same windows: a window holding any real word makes a real token.
        covered = ops.cast(mask, vectors.dtype)[..., None]
        covered = ops.conv(
            _pad_words(covered, self.padding, 0.0),
            ops.ones((self.kernel_size, 1, 1), vectors.dtype),
            strides=self.stride,
        )
        if self.max_pool:
            x = self._pool(x)
            covered = self._pool(covered)
        token_mask = covered[..., 0] > 0
        return x * ops.cast(token_mask, x.dtype)[..., None], token_mask

    def _pool(self, x):
        """PyTorch's max-pool: its padding never wins the max."""
        return ops.max_pool(
            _pad_words(x, self.pooling_padding, float("-inf")),
            self.pooling_kernel_size,
            self.pooling_stride,
            padding="valid",
        )

    def compute_output_shape(self, vectors_shape, mask_shape=None):
        batch, words, _ = vectors_shape
        pooling = (self.pooling_kernel_size, self.pooling_stride, self.pooling_padding)
        _, length = stage_output_size(
            words, self.kernel_size, self.stride, self.padding, pooling if self.max_pool else None
        )
        return (batch, length, self.filters), (batch, length)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "activation": keras.activations.serialize(self.activation),
            "max_pool": self.max_pool,
            "pooling_kernel_size": self.pooling_kernel_size,
            "pooling_stride": self.pooling_stride,
            "pooling_padding": self.pooling_padding,
        }


def _pad_words(x, padding, value):
    if not padding:
        return x
    return ops.pad(x, [[0, 0], [padding, padding], [0, 0]], constant_values=value)


@keras.saving.register_keras_serializable(package="cct_fast")
class SequencePositions(keras.layers.Layer):
    """Adds a positional table of ``1 + length`` rows to ``length`` tokens: row 0 is the
    official table's padding row (zeros in the sine table), and token ``i`` takes row
    ``i + 1``. The official code adds the whole table to one row fewer, which fails; this is
    its evident intent (see :mod:`cct_fast.core.text_config`)."""

    def __init__(self, kind, length, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("learnable", "sine"):
            raise ConfigError(
                f"SequencePositions kind must be 'learnable' or 'sine', got {kind!r}."
            )
        self.kind = kind
        self.length = length

    def build(self, input_shape):
        learnable = self.kind == "learnable"
        self.table = self.add_weight(
            shape=(1, self.length + 1, input_shape[-1]),
            initializer=TorchTruncatedNormal(0.2) if learnable else PaddedSinusoidalTable(),
            trainable=learnable,
            name="table",
        )

    def call(self, tokens):
        return tokens + ops.cast(self.table[:, 1:], tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "length": self.length}
