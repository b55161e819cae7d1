"""The convolutional tokenizer of CCT and the patch tokenizer of CVT and ViT-Lite."""

import keras
from keras import ops

from cct_fast.core.config import stage_output_size
from cct_fast.core.layers.initializers import he_normal_untruncated, torch_default_bias


@keras.saving.register_keras_serializable(package="cct_fast")
class ConvTokenizer(keras.layers.Layer):
    """Images (NHWC) to a sequence of tokens ``(batch, grid * grid, filters[-1])``.

    Each stage is a convolution, then ``activation`` (a name or callable, as Keras layers
    take it; None for none) and optionally a max-pool, with the official
    channel list ``[in_channels] + [in_planes] * (n - 1) + [embedding_dim]``. Padding is
    explicit and symmetric because Keras' ``"same"`` pads more on the bottom and right than
    on the top and left when the stride is 2, which shifts every window against PyTorch's.
    """

    def __init__(
        self,
        embedding_dim,
        kernel_size,
        stride,
        padding,
        n_conv_layers=1,
        in_planes=64,
        use_bias=False,
        activation="relu",
        max_pool=True,
        pooling_kernel_size=3,
        pooling_stride=2,
        pooling_padding=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.n_conv_layers = n_conv_layers
        self.in_planes = in_planes
        self.use_bias = use_bias
        if isinstance(activation, bool):  # the configs of cct_fast 0.1 saved a flag for ReLU
            activation = "relu" if activation else None
        self.activation = keras.activations.get(activation)
        self.max_pool = max_pool
        self.pooling_kernel_size = pooling_kernel_size
        self.pooling_stride = pooling_stride
        self.pooling_padding = pooling_padding
        filters = [in_planes] * (n_conv_layers - 1) + [embedding_dim]
        self.convs = [
            keras.layers.Conv2D(
                n,
                kernel_size,
                strides=stride,
                padding="valid",
                use_bias=use_bias,
                kernel_initializer=he_normal_untruncated(),
                name=f"conv_{i}",
                dtype=self.dtype_policy,
            )
            for i, n in enumerate(filters)
        ]
        self.pools = [
            keras.layers.MaxPooling2D(
                pooling_kernel_size,
                pooling_stride,
                padding="valid",
                name=f"pool_{i}",
                dtype=self.dtype_policy,
            )
            for i in range(n_conv_layers if max_pool else 0)
        ]

    def build(self, input_shape):
        channels = input_shape[-1]
        for conv in self.convs:
            if self.use_bias:
                conv.bias_initializer = torch_default_bias(channels * self.kernel_size**2)
            conv.build((None, None, None, channels))
            channels = conv.filters

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        sides = [height, width]
        pooling = (self.pooling_kernel_size, self.pooling_stride, self.pooling_padding)
        for _ in self.convs:
            sides = [
                stage_output_size(
                    side,
                    self.kernel_size,
                    self.stride,
                    self.padding,
                    pooling if self.max_pool else None,
                )[1]
                for side in sides
            ]
        tokens = None if None in sides else sides[0] * sides[1]
        return (batch, tokens, self.convs[-1].filters)

    def call(self, images):
        x = images
        for i, conv in enumerate(self.convs):
            x = conv(_pad_spatial(x, self.padding, 0.0))
            x = self.activation(x)
            if self.max_pool:
                # PyTorch's max-pool pads with -inf, so padding never wins the max.
                x = self.pools[i](_pad_spatial(x, self.pooling_padding, float("-inf")))
        _, height, width, channels = ops.shape(x)
        return ops.reshape(x, (-1, height * width, channels))

    def get_config(self):
        return {
            **super().get_config(),
            "embedding_dim": self.embedding_dim,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "n_conv_layers": self.n_conv_layers,
            "in_planes": self.in_planes,
            "use_bias": self.use_bias,
            "activation": keras.activations.serialize(self.activation),
            "max_pool": self.max_pool,
            "pooling_kernel_size": self.pooling_kernel_size,
            "pooling_stride": self.pooling_stride,
            "pooling_padding": self.pooling_padding,
        }


def _pad_spatial(x, padding, value):
    if not padding:
        return x
    return ops.pad(
        x, [[0, 0], [padding, padding], [padding, padding], [0, 0]], constant_values=value
    )
