"""The official PyTorch model as the anchor row of the benchmarks."""

from cct_fast.testing.official_torch import official_model


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
