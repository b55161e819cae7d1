"""The timings of check_cuda.py: the attention kernels against PyTorch's
``scaled_dot_product_attention`` backends, and a composed CCT-7/3x1 training step against
``torch.compile``. Each figure is the mean over CUDA-event-timed repeats after a warm-up."""

import torch
import torch_cct
from cuda_library import name_of

# (label, batch, tokens, heads, head_dim, masked)
ATTENTION_SHAPES = [
    (f"{name} b{batch}", batch, tokens, heads, 64, False)
    for name, tokens, heads in [
        ("cct_7_3x1_32", 256, 4),
        ("cct_7_7x2_224", 196, 4),
        ("cct_14_7x2_384", 576, 6),
    ]
    for batch in (64, 128)
] + [("text_cct_2 b256 masked", 256, 64, 2, 64, True)]
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def milliseconds(function, repeats=30):
    for _ in range(3):
        function()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        function()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def sdpa_backends():
    from torch.nn.attention import SDPBackend

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
    names |= {"cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    return {name: getattr(SDPBackend, member) for name, member in names.items()}


def sdpa(qkv, heads, mask):
    """The op's job through SDPA: packed qkv in, heads merged out."""
    batch, tokens, _ = qkv.shape
    q, k, v = qkv.view(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    attn_mask = None if mask is None else mask[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return out.transpose(1, 2).reshape(batch, tokens, -1)


def compare(kernels, qkv, grad_out, heads, mask):
    """((forward, forward + backward) ms of ours, {backend: the same of SDPA's}), for every
    SDPA backend that takes these inputs."""
    from torch.nn.attention import sdpa_kernel

    scale = (qkv.shape[-1] // (3 * heads)) ** -0.5

    def ours_forward():
        return kernels.attention(qkv, heads, scale, mask=mask)

    def ours_both():
        out, lse = kernels.attention(qkv, heads, scale, mask=mask)
        kernels.attention_backward(qkv, out, lse, grad_out, heads, scale, mask=mask)

    leaf = qkv.detach().requires_grad_()

    def their_forward():
        with torch.no_grad():
            return sdpa(leaf, heads, mask)

    def their_both():
        sdpa(leaf, heads, mask).backward(grad_out)

    theirs = {}
    for name, backend in sdpa_backends().items():
        try:
            with sdpa_kernel(backend):
                theirs[name] = (milliseconds(their_forward), milliseconds(their_both))
        except RuntimeError:  # this backend does not take the dtype, shape or mask
            continue
    return (milliseconds(ours_forward), milliseconds(ours_both)), theirs


def time_attention(kernels):
    print("\nattention, ms per call (forward | forward + backward); ratio: SDPA's best / ours")
    for label, batch, tokens, heads, head_dim, masked in ATTENTION_SHAPES:
        mask = None
        if masked:
            lengths = torch.randint(tokens // 4, tokens + 1, (batch,))
            mask = (torch.arange(tokens)[None, :] < lengths[:, None]).cuda()
        for dtype in DTYPES:
            qkv = torch.randn(batch, tokens, 3 * heads * head_dim, device="cuda", dtype=dtype)
            grad_out = torch.randn(batch, tokens, heads * head_dim, device="cuda", dtype=dtype)
            ours, theirs = compare(kernels, qkv, grad_out, heads, mask)
            best = [min(t[i] for t in theirs.values()) for i in (0, 1)] if theirs else [0, 0]
            print(
                f"{label} tokens {tokens} heads {heads}x{head_dim} {name_of(dtype)}: "
                f"cct_fast {ours[0]:.3f} | {ours[1]:.3f}; "
                + ", ".join(f"sdpa {n} {t[0]:.3f} | {t[1]:.3f}" for n, t in theirs.items())
                + f"; ratio {best[0] / ours[0]:.2f} | {best[1] / ours[1]:.2f}",
                flush=True,
            )


def time_training_step(kernels, batch=128):
    """Images per second of a CCT-7/3x1 AdamW step in bf16 autocast, composed of the kernels
    against PyTorch's operators under torch.compile."""
    images = torch.randn(batch, 3, 32, 32, device="cuda")
    labels = torch.randint(0, 10, (batch,), device="cuda")
    print(f"\nCCT-7/3x1 training step, batch {batch}, bf16 autocast, AdamW")
    variants = {
        "torch.compile": torch_cct.TorchOps(),
        "cct_fast kernels": torch_cct.KernelOps(kernels),
    }
    rates = {
        name: step_rate(ops, name == "torch.compile", images, labels)
        for name, ops in variants.items()
    }
    for name, rate in rates.items():
        print(f"{name}: {rate:,.0f} images/s", flush=True)
    ratio = rates["cct_fast kernels"] / rates["torch.compile"]
    print(f"cct_fast kernels / torch.compile: {ratio:.2f}x (target >= 1.1x)")


def step_rate(ops, compiled, images, labels):
    torch.manual_seed(0)
    model = torch_cct.CCT(ops).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    if compiled:
        model = torch.compile(model)
    ms = milliseconds(lambda: torch_cct.training_step(model, optimizer, images, labels), repeats=20)
    return len(images) / ms * 1000
