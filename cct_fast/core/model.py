"""The Compact Transformer model: CCT, CVT and ViT-Lite from one :class:`CCTConfig`."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from cct_fast.compute import DEFAULT_IMPLEMENTATION
from cct_fast.core.config import CCTConfig, config_arguments
from cct_fast.core.encoder_classifier import EncoderClassifier
from cct_fast.core.layers import (
    ConvTokenizer,
    PositionalEmbedding,
)


def _batch_size(data):
    """The number of images in an array or tensor, None if unknown or not an array."""
    shape = getattr(data, "shape", None)
    return shape[0] if shape is not None and len(shape) else None


@keras.saving.register_keras_serializable(package="cct_fast")
class CCT(EncoderClassifier):
    """Compact Convolutional Transformer (and CVT, ViT-Lite), as the official PyTorch code.

    Takes every architectural hyperparameter of the official ``CCT`` class, with its names and
    defaults (:class:`cct_fast.core.config.CCTConfig` checks them), plus the
    keras.applications conventions. Input: float NHWC images ``(batch, height, width,
    n_input_channels)`` (any size without a positional embedding). Output: logits
    ``(batch, num_classes)``. Under a mixed precision policy (``mixed_bfloat16``,
    ``mixed_float16``) LayerNorm, softmax, sequence pooling and the head run in float32, and
    the logits are float32.

    Args:
        img_size: image side, or ``(height, width)`` (the official code is square-only).
        embedding_dim: token width.
        n_input_channels: image channels.
        tokenizer: ``"convolutional"`` (CCT) or ``"patch"`` (CVT, ViT-Lite: ``kernel_size``
            patches).
        n_conv_layers, kernel_size, stride, padding, in_planes: the convolutional tokenizer
            (``stride`` and ``padding`` default as the official code derives them).
        pooling_kernel_size, pooling_stride, pooling_padding: its max-pools.
        dropout, attention_dropout, stochastic_depth: rates, active in training only.
        num_layers, num_heads, mlp_ratio: the encoder.
        num_classes: classes of the head.
        positional_embedding: ``"learnable"``, ``"sine"`` or ``"none"``.
        seq_pool: sequence pooling (CCT, CVT); False uses a class token (ViT-Lite).
        include_top: False returns the pooled features ``(batch, embedding_dim)``.
        classifier_activation: e.g. ``"softmax"``; None returns logits.
        jit_compile: ``compile`` (and ``predict`` before any compile) use XLA.
        implementation: ``"auto"`` (default: the custom ops where they were measured faster,
            else ``"fused"``), ``"fused"``, ``"reference"`` or ``"custom"``
            (:mod:`cct_fast.compute.dispatch`). All hold the same weights, so
            :func:`rebuild` gives the same model in another implementation.
        name: the model's name.
        dtype: the precision, a Keras dtype policy or its name (``"float32"``,
            ``"mixed_bfloat16"``, ``"mixed_float16"``), passed to every sublayer as keras-hub
            models do, so models of two precisions live side by side; None takes Keras'
            global policy.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        embedding_dim: int = 768,
        n_input_channels: int = 3,
        tokenizer: str = "convolutional",
        n_conv_layers: int = 1,
        kernel_size: int = 7,
        stride: int | None = None,
        padding: int | None = None,
        in_planes: int = 64,
        pooling_kernel_size: int = 3,
        pooling_stride: int = 2,
        pooling_padding: int = 1,
        dropout: float = 0.0,
        attention_dropout: float = 0.1,
        stochastic_depth: float = 0.1,
        num_layers: int = 14,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        positional_embedding: str = "learnable",
        seq_pool: bool = True,
        *,
        include_top: bool = True,
        classifier_activation: str | None = None,
        jit_compile: bool = False,
        implementation: str = DEFAULT_IMPLEMENTATION,
        name: str = "cct",
        **kwargs,
    ):
        config = CCTConfig(**config_arguments(CCTConfig, locals()))
        super().__init__(config, name=name, **kwargs)
        convolutional = config.tokenizer == "convolutional"
        self.tokenizer = ConvTokenizer(
            embedding_dim,
            kernel_size,
            config.conv_stride,
            config.conv_padding,
            n_conv_layers=config.conv_layers,
            in_planes=in_planes,
            use_bias=not convolutional,
            activation="relu" if convolutional else None,
            max_pool=convolutional,
            pooling_kernel_size=pooling_kernel_size,
            pooling_stride=pooling_stride,
            pooling_padding=pooling_padding,
            name="tokenizer",
            dtype=self.dtype_policy,
        )
        self._add_class_token()
        self.positional_embedding = None
        if positional_embedding != "none":
            self.positional_embedding = PositionalEmbedding(
                positional_embedding,
                config.token_grid,
                config.num_prefix_tokens,
                name="positional_embedding",
                dtype=self.dtype_policy,
            )
        self._add_encoder(include_top, classifier_activation, jit_compile, implementation)
        self.build((None,) + self.image_shape)

    @property
    def image_shape(self):
        """``(height, width, channels)`` of the images the model takes; sizes are None when any
        size works (no positional embedding)."""
        height, width = (
            (None, None) if self.positional_embedding is None else self.config.image_size
        )
        return (height, width, self.config.n_input_channels)

    def __call__(self, images, *args, **kwargs):
        if isinstance(images, (str, bytes, dict)) or not (
            hasattr(images, "shape") or isinstance(images, (list, tuple))
        ):
            raise TypeError(
                f"{self.name} takes a batch of images: a float tensor or numpy array of shape "
                f"{self._expected_shape()}; got a {type(images).__name__}."
            )
        if (
            isinstance(images, (list, tuple))
            and images
            and all(len(getattr(part, "shape", ())) == 2 for part in images)
        ):
            raise TypeError(
                f"{self.name} is an image model and takes one batch of images of shape "
                f"{self._expected_shape()}; got {len(images)} 2-D arrays, as a text model's "
                "(token_ids, mask)."
            )
        if _batch_size(images) == 0:
            self._check_images(images)
            one = ops.zeros((1,) + tuple(images.shape[1:]), images.dtype)
            return super().__call__(one, *args, **kwargs)[:0]  # what numpy gives for no rows
        return super().__call__(images, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x)
        if _batch_size(x) == 0:
            return ops.convert_to_numpy(self(x))  # Keras' predict fails on no batches
        return super().predict(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().evaluate(x, *args, **kwargs)

    def _check_data(self, x):
        """Check the images that ``predict``, ``fit`` and ``evaluate`` are given before Keras
        traces its step: once Keras relaxes a traced shape to None, the checks inside ``call``
        can no longer see a wrong size, and the failure came from deep inside a layer."""
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            x = spec[0] if isinstance(spec, tuple) else spec
        if isinstance(x, (np.ndarray, tf.TensorSpec)) or ops.is_tensor(x):
            self._check_images(x)

    def build(self, input_shape):
        self.tokenizer.build(input_shape)
        token_shape = self.tokenizer.compute_output_shape(input_shape)
        if self.class_token is not None:
            self.class_token.build(token_shape)
            token_shape = self.class_token.compute_output_shape(token_shape)
        if self.positional_embedding is not None:
            self.positional_embedding.build(token_shape)
        self._build_encoder(token_shape)

    def call(self, images, training=False):
        self._check_images(images)
        x = self.tokenizer(self._with_image_shape(images))
        if self.class_token is not None:
            x = self.class_token(x)
        if self.positional_embedding is not None:
            x = self.positional_embedding(x)
        return self._classify(x, training=training)

    def _expected_shape(self):
        return (
            "(batch, "
            + ", ".join(
                name if size is None else str(size)
                for name, size in zip("HWC", self.image_shape, strict=True)
            )
            + ")"
        )

    def _check_images(self, images):
        """Fail early, with what was expected and what came, instead of deep inside a layer."""
        shape = tuple(images.shape)
        expected = self.image_shape
        if len(shape) != 4:
            raise ValueError(
                f"{self.name} expects a batch of NHWC images of shape {self._expected_shape()}; "
                f"got an input of shape {shape}. "
                + ("Add a batch axis (images[None])." if len(shape) == 3 else "")
            )
        if shape[3] is not None and shape[3] != expected[2]:
            hint = ""
            if shape[1] == expected[2]:
                hint = " The input looks channels-first: transpose it to NHWC."
            raise ValueError(
                f"{self.name} expects NHWC images with {expected[2]} channels in the last axis; "
                f"got shape {shape}.{hint}"
            )
        sizes = zip(shape[1:3], expected[:2], strict=True)
        if any(e is not None and s is not None and s != e for s, e in sizes):
            height, width = shape[1:3]
            size = height if height == width else (height, width)
            raise ValueError(
                f"{self.name} was built for {expected[0]}x{expected[1]} images: its "
                f"{self.config.positional_embedding} positional embedding covers "
                f"{self.config.sequence_length} tokens. Got {height}x{width} images. Resize the "
                f"images, or create the model with img_size={size} (non-square sizes are "
                "accepted as (height, width), unlike in the official code; a learnable "
                "embedding loaded from a checkpoint is resized to it)."
            )
        dtype = keras.backend.standardize_dtype(images.dtype)
        if not dtype.startswith(("float", "bfloat")):
            raise TypeError(
                f"{self.name} expects floating-point images; got {dtype}. Convert and scale "
                "them as in training, e.g. tf.cast(images, tf.float32) / 255.0, then normalise "
                "with the dataset mean and standard deviation."
            )

    def _with_image_shape(self, images):
        """``images``, checked at run time where the traced shape does not say their size (a
        graph Keras traced with relaxed shapes, a dataset of unknown image size)."""
        expected = (None,) + self.image_shape
        if all(e is None or s is not None for s, e in zip(images.shape, expected, strict=False)):
            return images
        return tf.ensure_shape(images, expected)


def rebuild(model, *, implementation="reference", policy=None):
    """The same model in another ``implementation`` and, if given, another dtype ``policy``
    (``"mixed_float16"``, say), holding ``model``'s weights."""
    config = {**model.get_config(), "implementation": implementation, "jit_compile": False}
    if policy is not None:
        config["dtype"] = policy
    twin = type(model).from_config(config)
    twin.set_weights(model.get_weights())
    return twin
