"""The official PyTorch architecture as the anchor row, when torch and vit-pytorch are present."""

import importlib.util
from pathlib import Path


def official_module():
    """vit-pytorch's ``cct.py`` (state-dict-identical to the official code), or None."""
    try:
        import torch  # noqa: F401
    except ImportError:
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
    module = official_module()
    if module is None:
        return None
    return module.CCT(
        img_size=config.img_size, embedding_dim=config.embedding_dim,
        n_conv_layers=config.n_conv_layers, kernel_size=config.kernel_size,
        stride=config.conv_stride, padding=config.conv_padding, num_layers=config.num_layers,
        num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, num_classes=config.num_classes,
        positional_embedding=config.positional_embedding,
    )


def inference_function(config, bfloat16):
    import torch

    model = official_model(config).eval()

    def run(images_nchw):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
            return model(images_nchw).float().numpy()

    return run


def train_step_function(config):
    import torch

    model = official_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.06)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(images_nchw, labels):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images_nchw), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step
