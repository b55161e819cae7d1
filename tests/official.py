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


def trained_like_official(model, seed=0):
    """Draw every weight afresh, at the scales of a trained model rather than of the official
    initialisation (std 0.02, zero biases, unit norms): kernels that keep activations near unit
    variance (He for the convolutions before a ReLU, 1/sqrt(fan_in) for linear layers),
    LayerNorm scales around 1 with shifts, biases and embeddings off zero. Attention is then
    far from uniform and LayerNorm inputs have variances near 1, where its epsilon shows, so
    a port that swaps q and k or changes epsilon cannot pass."""
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
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def official_logits(model, images_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))).numpy()
