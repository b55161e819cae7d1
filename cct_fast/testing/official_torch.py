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


def official_model(config):
    """The official PyTorch model for a :class:`cct_fast.CCTConfig` (freshly initialised)."""
    import torch

    official = official_module()
    if config.tokenizer == "convolutional":
        return official.CCT(
            img_size=config.image_size, embedding_dim=config.embedding_dim,
            n_input_channels=config.n_input_channels, n_conv_layers=config.n_conv_layers,
            kernel_size=config.kernel_size, stride=config.conv_stride,
            padding=config.conv_padding, pooling_kernel_size=config.pooling_kernel_size,
            pooling_stride=config.pooling_stride, pooling_padding=config.pooling_padding,
            dropout_rate=config.dropout, attention_dropout=config.attention_dropout,
            stochastic_depth_rate=config.stochastic_depth, num_layers=config.num_layers,
            num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
            num_classes=config.num_classes, positional_embedding=config.positional_embedding,
        )
    model = torch.nn.Module()
    model.tokenizer = official.Tokenizer(
        kernel_size=config.kernel_size, stride=config.kernel_size, padding=0,
        n_input_channels=config.n_input_channels, n_output_channels=config.embedding_dim,
        max_pool=False, activation=None, n_conv_layers=1, conv_bias=True,
    )
    model.classifier = official.TransformerClassifier(
        sequence_length=model.tokenizer.sequence_length(
            n_channels=config.n_input_channels, height=config.image_size[0],
            width=config.image_size[1]),
        embedding_dim=config.embedding_dim, seq_pool=config.seq_pool,
        dropout_rate=config.dropout, attention_dropout=config.attention_dropout,
        stochastic_depth_rate=config.stochastic_depth, num_layers=config.num_layers,
        num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
        num_classes=config.num_classes, positional_embedding=config.positional_embedding,
    )
    model.forward = lambda x: model.classifier(model.tokenizer(x))
    return model
