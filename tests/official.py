"""The official architecture in PyTorch, for parity tests.

vit-pytorch's ``cct.py`` is state-dict-identical to SHI-Labs/Compact-Transformers. Its package
``__init__`` imports torchvision, so the one file is loaded by path. CVT and ViT-Lite are
assembled from the same ``Tokenizer`` and ``TransformerClassifier`` exactly as the official
``src/cvt.py`` and ``src/vit.py`` assemble them.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("einops")


def _load_vit_pytorch_cct():
    spec = importlib.util.find_spec("vit_pytorch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vit-pytorch is not installed (pip install --no-deps vit-pytorch)")
    path = Path(next(iter(spec.submodule_search_locations))) / "cct.py"
    module_spec = importlib.util.spec_from_file_location("vit_pytorch_cct", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


official = _load_vit_pytorch_cct()


class OfficialPatchModel(torch.nn.Module):
    """The official CVT (``seq_pool=True``) or ViT-Lite (``seq_pool=False``)."""

    def __init__(self, config):
        super().__init__()
        self.tokenizer = official.Tokenizer(
            kernel_size=config.kernel_size, stride=config.kernel_size, padding=0,
            n_input_channels=config.n_input_channels, n_output_channels=config.embedding_dim,
            max_pool=False, activation=None, n_conv_layers=1, conv_bias=True,
        )
        self.classifier = official.TransformerClassifier(
            sequence_length=self.tokenizer.sequence_length(
                n_channels=config.n_input_channels, height=config.img_size, width=config.img_size
            ),
            embedding_dim=config.embedding_dim, seq_pool=config.seq_pool,
            dropout_rate=config.dropout, attention_dropout=config.attention_dropout,
            stochastic_depth_rate=config.stochastic_depth, num_layers=config.num_layers,
            num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
            num_classes=config.num_classes, positional_embedding=config.positional_embedding,
        )

    def forward(self, x):
        return self.classifier(self.tokenizer(x))


def official_model(config):
    """The official PyTorch model for a :class:`cct_fast.CCTConfig`, in eval mode."""
    torch.manual_seed(0)
    if config.tokenizer == "patch":
        model = OfficialPatchModel(config)
    else:
        model = official.CCT(
            img_size=config.img_size, embedding_dim=config.embedding_dim,
            n_input_channels=config.n_input_channels, n_conv_layers=config.n_conv_layers,
            kernel_size=config.kernel_size, stride=config.conv_stride,
            padding=config.conv_padding, pooling_kernel_size=config.pooling_kernel_size,
            pooling_stride=config.pooling_stride, pooling_padding=config.pooling_padding,
            dropout_rate=config.dropout, attention_dropout=config.attention_dropout,
            stochastic_depth_rate=config.stochastic_depth, num_layers=config.num_layers,
            num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
            num_classes=config.num_classes, positional_embedding=config.positional_embedding,
        )
    return model.eval()


def perturb(model, seed=0):
    """Move LayerNorm scales and every bias away from their 1 / 0 initial values, so that a
    port that drops or swaps one of them cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("bias") or "norm" in name:
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    return model


def state_dict_numpy(model):
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def official_logits(model, images_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))).numpy()
