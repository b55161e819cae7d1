"""The official PyTorch architecture, for parity checks and speed comparisons.

vit-pytorch's ``cct.py`` is state-dict-identical to SHI-Labs/Compact-Transformers. Its package
``__init__`` imports torchvision, so the one file is loaded by path. CVT and ViT-Lite are
assembled from its ``Tokenizer`` and ``TransformerClassifier`` exactly as the official
``src/cvt.py`` and ``src/vit.py`` assemble them. Needs torch, einops and vit-pytorch
(``pip install --no-deps vit-pytorch``); nothing here is imported by ``import cct_fast``.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np


@functools.cache
def official_module():
    """vit-pytorch's ``cct`` module, or None when torch, einops or vit-pytorch is missing."""
    if any(importlib.util.find_spec(name) is None for name in ("torch", "einops")):
        return None
    spec = importlib.util.find_spec("vit_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "cct.py"
    module_spec = importlib.util.spec_from_file_location("vit_pytorch_cct", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def official_model(config, seed=0):
    """The official PyTorch model for a :class:`cct_fast.CCTConfig`, initialised from
    ``seed``, in eval mode."""
    import torch

    torch.manual_seed(seed)

    official = official_module()
    encoder = dict(
        dropout_rate=config.dropout,
        attention_dropout=config.attention_dropout,
        stochastic_depth_rate=config.stochastic_depth,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        num_classes=config.num_classes,
        positional_embedding=config.positional_embedding,
    )
    if config.tokenizer == "convolutional":
        return official.CCT(
            img_size=config.image_size,
            embedding_dim=config.embedding_dim,
            n_input_channels=config.n_input_channels,
            n_conv_layers=config.n_conv_layers,
            kernel_size=config.kernel_size,
            stride=config.conv_stride,
            padding=config.conv_padding,
            pooling_kernel_size=config.pooling_kernel_size,
            pooling_stride=config.pooling_stride,
            pooling_padding=config.pooling_padding,
            **encoder,
        ).eval()
    model = torch.nn.Module()
    model.tokenizer = official.Tokenizer(
        kernel_size=config.kernel_size,
        stride=config.kernel_size,
        padding=0,
        n_input_channels=config.n_input_channels,
        n_output_channels=config.embedding_dim,
        max_pool=False,
        activation=None,
        n_conv_layers=1,
        conv_bias=True,
    )
    model.classifier = official.TransformerClassifier(
        sequence_length=model.tokenizer.sequence_length(
            n_channels=config.n_input_channels,
            height=config.image_size[0],
            width=config.image_size[1],
        ),
        embedding_dim=config.embedding_dim,
        seq_pool=config.seq_pool,
        **encoder,
    )
    model.forward = lambda x: model.classifier(model.tokenizer(x))
    return model.eval()


def trained_like(model, seed=0):
    """Draw every weight afresh, at the scales of a trained model rather than of the official
    initialisation (std 0.02, zero biases, unit norms): kernels that keep activations near unit
    variance (He for the convolutions before a ReLU, 1/sqrt(fan_in) for linear layers),
    LayerNorm scales around 1 with shifts, biases and embeddings off zero. Attention is then
    far from uniform and LayerNorm inputs have variances near 1, where its epsilon shows, so
    a port that swaps q and k or changes epsilon cannot pass."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return mean + std * torch.randn(shape, generator=generator)

    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if not tensor.requires_grad:  # the sine table is a function of its shape
                continue
            if tensor.ndim == 4:  # convolution (out, in, kh, kw), before a ReLU
                tensor.copy_(normal(tensor.shape, (2.0 / tensor[0].numel()) ** 0.5))
            elif tensor.ndim == 2:  # linear (out, in)
                tensor.copy_(normal(tensor.shape, tensor.shape[1] ** -0.5))
            elif tensor.ndim == 3:  # positional embedding or class token
                tensor.copy_(normal(tensor.shape, 0.5))
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(normal(tensor.shape, 0.2, mean=1.0))
            else:  # biases, LayerNorm shifts
                tensor.copy_(normal(tensor.shape, 0.2))
    return model


def state_dict_numpy(model):
    """The PyTorch model's state dict as numpy arrays."""
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def official_logits(model, images_nhwc):
    """The PyTorch model's output for NHWC images."""
    import torch

    with torch.no_grad():
        return model(
            torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        ).numpy()
