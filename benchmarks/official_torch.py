"""The official PyTorch model as the anchor rows of the benchmarks: eager, and under
``torch.compile`` (what a PyTorch user would run for speed). Compiled with static shapes: the
models share one ``forward``, so after two batch sizes dynamo would trace it with a dynamic
batch, and inductor then fails on the training step's drop-path (``ValueRangeError``)."""

from cct_fast.testing.official_text import official_text_model
from cct_fast.testing.official_torch import official_model


def inference_function(config, bfloat16, compiled=False):
    import torch

    model = official_model(config).eval()
    if compiled:
        model = torch.compile(model, dynamic=False)

    def run(images_nchw):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
            return model(images_nchw).float().numpy()

    return run


def train_step_function(config, bfloat16=False, compiled=False):
    """One AdamW step at the official training defaults (attention dropout 0.1, stochastic
    depth 0.1), optionally under bfloat16 autocast and ``torch.compile``."""
    import torch

    model = official_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.06)
    loss_fn = torch.nn.CrossEntropyLoss()
    forward = torch.compile(model, dynamic=False) if compiled else model

    def step(images_nchw, labels):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
            loss = loss_fn(forward(images_nchw), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def text_inference_function(name, **overrides):
    """The official text computation (the reference of ``cct_fast.testing.official_text``,
    with its two fixes) on (ids, mask) tensors."""
    import torch

    model = official_text_model(name, **overrides).eval()

    def run(ids, mask):
        with torch.inference_mode():
            return model(ids, mask).numpy()

    return run


def text_train_step_function(name, **overrides):
    import torch

    model = official_text_model(name, **overrides).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(ids, mask, labels):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(ids, mask), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step
