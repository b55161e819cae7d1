"""Helpers around the official PyTorch models (:mod:`cct_fast.torch_reference`) for parity."""

import numpy as np
import pytest

from cct_fast import torch_reference

torch = pytest.importorskip("torch")
if torch_reference.official_module() is None:
    pytest.skip("einops or vit-pytorch is not installed (pip install --no-deps vit-pytorch)",
                allow_module_level=True)


def official_model(config):
    """The official PyTorch model for a :class:`cct_fast.CCTConfig`, seeded, in eval mode."""
    torch.manual_seed(0)
    return torch_reference.official_model(config).eval()


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
