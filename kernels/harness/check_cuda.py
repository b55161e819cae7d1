"""Checks and times the CUDA kernels on a GPU machine without TensorFlow.

    python kernels/harness/check_cuda.py                 # compiles kernels/cuda with nvcc first
    python kernels/harness/check_cuda.py --library cct_fast/libcct_fast_cuda_harness.so

Needs PyTorch with CUDA. The kernels are called through their C launchers (the same functions
the TensorFlow ops call, :mod:`cuda_library`) on PyTorch's stream and compared with a float64
reference on the same device: attention forward, log-sum-exp and every gradient in float32
(exact, <= 1e-5), bfloat16 and float16 (tensor cores: the reference takes the rounded inputs,
and the tolerance is that of one rounding of the probabilities and outputs), for head_dim 16,
32, 64 and 128, odd token counts, a key-padding mask and dropout. The dropout's kept elements
must be the Philox mask of ``cct_fast/testing/philox.py`` (the CPU kernels' too), and the keep
rate 0.9 within 4 standard deviations over 16.7 M draws. Sequence pooling and (residual +)
LayerNorm are checked in the three dtypes.

Then the attention is timed, forward and forward + backward, against
``torch.nn.functional.scaled_dot_product_attention`` in the same dtype with each of its
backends named (flash, memory-efficient, cuDNN, math), on the shapes of cct_7_3x1_32 (256
tokens, 4 heads of 64), cct_7_7x2_224 (196, 4 x 64) and cct_14_7x2_384 (576, 6 x 64) at batch
64 and 128, and text_cct_2 masked (batch 256, 64 tokens, 2 x 64); SDPA gets the same packed qkv
and returns heads merged, as the op does. Last, :mod:`torch_cct` times a CCT-7/3x1 training
step composed of these kernels against the same model in PyTorch's own ops under
``torch.compile``, both in bf16 autocast. Exits 1 if any check fails.
"""

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_library import Kernels, compile_library, keep_of, name_of  # noqa: E402
from timing import time_attention, time_training_step  # noqa: E402

PHILOX = Path(__file__).resolve().parents[2] / "cct_fast" / "testing" / "philox.py"
# Relative error against float64: float32 exact; 16-bit the rounding of the probabilities, the
# output (and for gradients the score gradients) to 8 (bfloat16) or 11 (float16) bits.
TOLERANCE = {
    torch.float32: {"forward": 1e-5, "gradient": 1e-5},
    torch.bfloat16: {"forward": 1.2e-2, "gradient": 2.5e-2},
    torch.float16: {"forward": 1.5e-3, "gradient": 3e-3},
}
RATE, SEED = 0.1, (20261126, 4294967289)
CHECK_SHAPES = [(2, 256, 4, 64), (3, 1, 2, 32), (2, 37, 3, 128), (2, 65, 2, 16), (1, 259, 1, 64)]
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def philox_module():
    """cct_fast/testing/philox.py, loaded by path: the package itself imports TensorFlow."""
    spec = importlib.util.spec_from_file_location("philox", PHILOX)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_attention(qkv, heads, scale, factors=None, mask=None):
    """Attention in qkv's dtype. ``factors`` (batch, heads, tokens, tokens): the dropout's 0 or
    1 / keep per probability. ``mask`` (batch, tokens), true on real tokens: a padded query's
    scores are all 0 (it attends uniformly and passes no gradient to them), a real query's
    score of a padded key the most negative."""
    batch, tokens, width = qkv.shape
    q, k, v = qkv.view(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        real_query, real_key = mask[:, None, :, None], mask[:, None, None, :]
        scores = torch.where(real_key, scores, -torch.inf)
        scores = torch.where(
            real_query, scores, torch.zeros((), dtype=scores.dtype, device=scores.device)
        )
    probabilities = scores.softmax(-1)
    if factors is not None:
        probabilities = probabilities * factors
    out = (probabilities @ v).transpose(1, 2).reshape(batch, tokens, -1)
    return out, scores.logsumexp(-1)


def relative(actual, expected):
    return float((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30))


def failures_of(label, errors, tolerances):
    """Prints ``errors`` and returns those above their tolerance (outputs "forward", the rest
    "gradient")."""
    print(label, " ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    failures = []
    for name, error in errors.items():
        limit = tolerances["forward" if name in ("output", "logsumexp") else "gradient"]
        if error > limit:
            failures.append(f"{label}: {name} {error:.1e} > {limit:.0e}")
    return failures


def padding_mask(batch, tokens, generator):
    """Real tokens first, a random length per row (at least one), as the text models pad."""
    lengths = torch.randint(1, tokens + 1, (batch,), generator=generator)
    return (torch.arange(tokens)[None, :] < lengths[:, None]).cuda()


def compare_attention(kernels, dtype, batch, tokens, heads, head_dim, rate=0.0, masked=False):
    """Forward, log-sum-exp and gradients against float64 on the same rounded inputs (given
    the Philox mask when ``rate`` > 0); prints the errors and returns the failures."""
    generator = torch.Generator().manual_seed(batch * 1000 + tokens)
    mask = padding_mask(batch, tokens, generator) if masked else None
    factors = None
    if rate:
        keep = keep_of(rate)
        dropped = philox_module().dropout_mask(batch, heads, tokens, keep, SEED)
        factors = torch.from_numpy(dropped).cuda().double() / keep
    qkv = torch.randn(batch, tokens, 3 * heads * head_dim, device="cuda").to(dtype)
    grad_out = torch.randn(batch, tokens, heads * head_dim, device="cuda").to(dtype)
    scale = head_dim**-0.5
    out, lse = kernels.attention(qkv, heads, scale, rate, SEED, mask)
    grad = kernels.attention_backward(qkv, out, lse, grad_out, heads, scale, rate, SEED, mask)
    exact = qkv.double().requires_grad_()
    expected, expected_lse = reference_attention(exact, heads, scale, factors, mask)
    (expected * grad_out.double()).sum().backward()
    errors = {
        "output": relative(out, expected.detach()),
        "logsumexp": relative(lse, expected_lse.detach()),
        "grad_qkv": relative(grad, exact.grad),
    }
    label = (
        f"attention {name_of(dtype)} batch {batch} tokens {tokens} "
        f"heads {heads} head_dim {head_dim}"
        + (" masked" if masked else "")
        + (f" dropout {rate}" if rate else "")
    )
    return failures_of(label, errors, TOLERANCE[dtype])


def check_attention(kernels):
    failures = []
    for dtype in DTYPES:
        for shape in CHECK_SHAPES:
            failures += compare_attention(kernels, dtype, *shape)
            failures += compare_attention(kernels, dtype, *shape, masked=True)
        for shape in [(2, 256, 4, 64), (2, 37, 3, 128), (1, 65, 2, 16)]:
            failures += compare_attention(kernels, dtype, *shape, rate=RATE)
            failures += compare_attention(kernels, dtype, *shape, rate=RATE, masked=True)
    return failures


def check_keep_rate(kernels):
    """With v the identity, the output row of query i holds its kept probabilities (all
    positive), so the nonzeros count the kept draws."""
    keep, failures = keep_of(RATE), []
    batch, tokens, heads = 1024, 64, 4
    for dtype in DTYPES:
        qkv = torch.randn(batch, tokens, 3, heads, tokens, device="cuda")
        qkv[:, :, 2] = torch.eye(tokens, device="cuda")[:, None, :]
        out, _ = kernels.attention(qkv.reshape(batch, tokens, -1).to(dtype), heads, 0.3, RATE, SEED)
        kept = (out.view(batch, tokens, heads, tokens) > 0).double().mean().item()
        sigma = (keep * (1 - keep) / (batch * heads * tokens * tokens)) ** 0.5
        print(
            f"dropout {name_of(dtype)} keep rate {kept:.6f} over {batch * heads * tokens**2:,} "
            f"draws (4 sigma {4 * sigma:.1e})"
        )
        if abs(kept - keep) > 4 * sigma:
            failures.append(
                f"dropout {dtype} keep rate {kept:.6f}, expected {keep:.6f} +- {4 * sigma:.1e}"
            )
    return failures


def check_pooling(kernels):
    failures = []
    for dtype in DTYPES:
        for batch, tokens, dim in [(4, 64, 256), (3, 1, 32), (2, 37, 20)]:
            x = torch.randn(batch, tokens, dim, device="cuda").to(dtype)
            kernel = torch.randn(dim, device="cuda") * 0.1
            bias = torch.tensor(0.3, device="cuda")
            grad_out = torch.randn(batch, dim, device="cuda").to(dtype)
            out, weights = kernels.sequence_pool(x, kernel, bias)
            grad_x, grad_kernel, grad_bias = kernels.sequence_pool_backward(
                x, kernel, weights, grad_out
            )
            exact_x, exact_kernel = x.double().requires_grad_(), kernel.double().requires_grad_()
            exact_bias = bias.double().requires_grad_()
            probabilities = (exact_x @ exact_kernel + exact_bias).softmax(1)
            expected = (probabilities.unsqueeze(-1) * exact_x).sum(1)
            (expected * grad_out.double()).sum().backward()
            errors = {
                "output": relative(out, expected.detach()),
                "grad_tokens": relative(grad_x, exact_x.grad),
                "grad_kernel": relative(grad_kernel, exact_kernel.grad),
                "grad_bias": relative(grad_bias, exact_bias.grad),
            }
            label = f"pooling {name_of(dtype)} batch {batch} tokens {tokens} dim {dim}"
            failures += failures_of(label, errors, TOLERANCE[dtype])
    return failures


def check_layer_norm(kernels):
    failures = []
    for dtype in DTYPES:
        for rows, width, with_residual in [
            (4096, 256, True),
            (37, 20, False),
            (3, 384, True),
            (1, 1, False),
        ]:
            x = torch.randn(rows, width, device="cuda").to(dtype) * 3 + 1
            residual = torch.randn(rows, width, device="cuda").to(dtype) if with_residual else None
            gamma = torch.randn(width, device="cuda")
            beta = torch.randn(width, device="cuda")
            grad_y = torch.randn(rows, width, device="cuda").to(dtype)
            y, mean, rstd = kernels.layer_norm(x, gamma, beta, 1e-5, residual)
            grad_x, grad_gamma, grad_beta = kernels.layer_norm_backward(
                x, gamma, mean, rstd, grad_y, residual
            )
            exact_x = x.double().requires_grad_()
            exact_gamma, exact_beta = (
                gamma.double().requires_grad_(),
                beta.double().requires_grad_(),
            )
            summed = exact_x if residual is None else exact_x + residual.double()
            expected = torch.nn.functional.layer_norm(
                summed, (width,), exact_gamma, exact_beta, 1e-5
            )
            (expected * grad_y.double()).sum().backward()
            errors = {
                "output": relative(y, expected.detach()),
                "grad_x": relative(grad_x, exact_x.grad),
                "grad_gamma": relative(grad_gamma, exact_gamma.grad),
                "grad_beta": relative(grad_beta, exact_beta.grad),
            }
            label = f"layer_norm {name_of(dtype)} rows {rows} width {width}" + (
                " + residual" if with_residual else ""
            )
            failures += failures_of(label, errors, TOLERANCE[dtype])
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, help="a built libcct_fast_cuda_harness.so")
    parser.add_argument("--skip-timing", action="store_true", help="run the checks only")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("No CUDA device: this harness checks the kernels on a GPU.")
    torch.manual_seed(0)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        kernels = Kernels(args.library or compile_library(directory))
        failures = []
        for check in (check_attention, check_keep_rate, check_pooling, check_layer_norm):
            try:
                failures += check(kernels)
            except RuntimeError as error:  # a launcher's error: report it, run the others
                failures.append(f"{check.__name__}: {error}")
            sys.stdout.flush()
        if not args.skip_timing:
            time_attention(kernels)
            time_training_step(kernels)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
