"""Checks and times the CUDA kernels on a GPU machine without TensorFlow.

    python kernels/harness/check_cuda.py                 # compiles kernels/cuda with nvcc first
    python kernels/harness/check_cuda.py --library cct_fast/libcct_fast_cuda_harness.so

Needs PyTorch with CUDA. The kernels are called through their C launchers (the same functions
the TensorFlow ops call) on PyTorch's stream and compared with a float64 reference attention and
pooling on the same device: forward, log-sum-exp and gradients, on CCT shapes and odd ones.
Attention dropout: the kept elements must be the Philox mask of ``cct_fast/testing/philox.py``
(the CPU kernels' too), the output and gradients those of the reference given that mask, and
the keep rate 0.9 within 4 standard deviations over 16.7 M draws. Then the forward is timed
against ``torch.nn.functional.scaled_dot_product_attention`` on CCT shapes (sequence 256,
head_dim 64, 4 heads, batch 64 and 128), without and with dropout. Exits 1 if any check fails.
"""

import argparse
import ctypes
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SOURCES = Path(__file__).resolve().parents[1] / "cuda"
PHILOX = Path(__file__).resolve().parents[2] / "cct_fast" / "testing" / "philox.py"
TOLERANCE = 1e-5  # relative, float32 against float64
RATE, SEED = 0.1, (20261126, 4294967289)
CHECK_SHAPES = [(2, 256, 4, 64), (3, 1, 2, 32), (2, 37, 3, 128), (2, 65, 2, 16), (1, 259, 1, 64)]
TIMING_SHAPES = [(64, 256, 4, 64), (128, 256, 4, 64)]


def compile_library(directory):
    capability = "".join(map(str, torch.cuda.get_device_capability()))
    path = Path(directory) / "libcct_fast_cuda_harness.so"
    subprocess.run(
        [
            "nvcc",
            "-O3",
            "-shared",
            "-Xcompiler",
            "-fPIC",
            f"-arch=sm_{capability}",
            "-I",
            str(SOURCES),
            str(SOURCES / "attention.cu"),
            str(SOURCES / "pooling.cu"),
            "-o",
            str(path),
        ],
        check=True,
    )
    return path


def load(path):
    library = ctypes.CDLL(str(path))
    i64, f32, u32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_uint32, ctypes.c_void_p
    library.cct_cuda_attention_forward.argtypes = [ptr] * 3 + [i64] * 4 + [f32, f32, u32, u32, ptr]
    library.cct_cuda_attention_backward.argtypes = [ptr] * 6 + [i64] * 4 + [f32, f32, u32, u32, ptr]
    library.cct_cuda_sequence_pool_forward.argtypes = [ptr] * 5 + [i64] * 3 + [ptr]
    library.cct_cuda_sequence_pool_backward.argtypes = [ptr] * 8 + [i64] * 3 + [ptr]
    library.cct_cuda_error_string.restype = ctypes.c_char_p
    return library


def stream():
    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


def checked(library, code):
    if code != 0:
        raise RuntimeError(library.cct_cuda_error_string(code).decode())


def philox_module():
    """cct_fast/testing/philox.py, loaded by path: the package itself imports TensorFlow."""
    spec = importlib.util.spec_from_file_location("philox", PHILOX)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keep_of(rate):
    return float(torch.tensor(1.0, dtype=torch.float32) - torch.tensor(rate, dtype=torch.float32))


def attention(library, qkv, heads, scale, rate=0.0, seed=(0, 0)):
    batch, tokens, width = qkv.shape
    head_dim = width // (3 * heads)
    out = torch.empty(batch, tokens, heads * head_dim, device=qkv.device)
    lse = torch.empty(batch, heads, tokens, device=qkv.device)
    checked(
        library,
        library.cct_cuda_attention_forward(
            qkv.data_ptr(),
            out.data_ptr(),
            lse.data_ptr(),
            batch,
            tokens,
            heads,
            head_dim,
            scale,
            keep_of(rate),
            *seed,
            stream(),
        ),
    )
    return out, lse


def attention_backward(library, qkv, out, lse, grad_out, heads, scale, rate=0.0, seed=(0, 0)):
    batch, tokens, width = qkv.shape
    grad = torch.empty_like(qkv)
    delta = torch.empty_like(lse)
    checked(
        library,
        library.cct_cuda_attention_backward(
            qkv.data_ptr(),
            out.data_ptr(),
            lse.data_ptr(),
            grad_out.data_ptr(),
            grad.data_ptr(),
            delta.data_ptr(),
            batch,
            tokens,
            heads,
            width // (3 * heads),
            scale,
            keep_of(rate),
            *seed,
            stream(),
        ),
    )
    return grad


def reference_attention(qkv, heads, scale, factors=None):
    """Attention in qkv's dtype; ``factors`` (batch, heads, tokens, tokens): the dropout's 0 or
    1 / keep per probability."""
    batch, tokens, width = qkv.shape
    q, k, v = qkv.view(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) * scale
    probabilities = scores.softmax(-1)
    if factors is not None:
        probabilities = probabilities * factors
    out = (probabilities @ v).transpose(1, 2).reshape(batch, tokens, -1)
    return out, scores.logsumexp(-1)


def relative(actual, expected):
    return float((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30))


def compare_attention(library, label, batch, tokens, heads, head_dim, rate=0.0):
    """Forward, log-sum-exp and gradients against the float64 reference (given the Philox
    mask when ``rate`` > 0); prints the errors and returns the failures."""
    factors = None
    if rate:
        keep = keep_of(rate)
        mask = philox_module().dropout_mask(batch, heads, tokens, keep, SEED)
        factors = torch.from_numpy(mask).cuda().double() / keep
    qkv = torch.randn(batch, tokens, 3 * heads * head_dim, device="cuda")
    grad_out = torch.randn(batch, tokens, heads * head_dim, device="cuda")
    scale = head_dim**-0.5
    out, lse = attention(library, qkv, heads, scale, rate, SEED)
    grad = attention_backward(library, qkv, out, lse, grad_out, heads, scale, rate, SEED)
    exact = qkv.double().requires_grad_()
    expected, expected_lse = reference_attention(exact, heads, scale, factors)
    (expected * grad_out.double()).sum().backward()
    errors = {
        "output": relative(out, expected.detach()),
        "logsumexp": relative(lse, expected_lse.detach()),
        "grad_qkv": relative(grad, exact.grad),
    }
    shape = f"{label} batch {batch} tokens {tokens} heads {heads} head_dim {head_dim}"
    print(shape, " ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    return [f"{shape}: {k} {v:.1e}" for k, v in errors.items() if v > TOLERANCE]


def check_attention(library):
    return [f for shape in CHECK_SHAPES for f in compare_attention(library, "attention", *shape)]


def check_dropout(library):
    """The CUDA mask is the Philox one, forward and backward, at the keep rate."""
    keep, failures = keep_of(RATE), []
    for shape in [(2, 256, 4, 64), (2, 37, 3, 128), (1, 65, 2, 16)]:
        failures += compare_attention(library, "dropout", *shape, rate=RATE)
    # The keep rate: with v the identity, the output row of query i holds its kept
    # probabilities (all positive), so the nonzeros count the kept draws.
    batch, tokens, heads = 1024, 64, 4
    qkv = torch.randn(batch, tokens, 3, heads, tokens, device="cuda")
    qkv[:, :, 2] = torch.eye(tokens, device="cuda")[:, None, :]
    out, _ = attention(library, qkv.reshape(batch, tokens, -1), heads, 0.3, RATE, SEED)
    kept = (out.view(batch, tokens, heads, tokens) > 0).double().mean().item()
    sigma = (keep * (1 - keep) / (batch * heads * tokens * tokens)) ** 0.5
    draws = batch * heads * tokens**2
    print(f"dropout keep rate {kept:.6f} over {draws:,} draws (4 sigma {4 * sigma:.1e})")
    if abs(kept - keep) > 4 * sigma:
        failures.append(f"dropout keep rate {kept:.6f}, expected {keep:.6f} +- {4 * sigma:.1e}")
    return failures


def check_pooling(library):
    failures = []
    for batch, tokens, dim in [(4, 64, 256), (3, 1, 32), (2, 37, 20)]:
        x = torch.randn(batch, tokens, dim, device="cuda")
        kernel = torch.randn(dim, device="cuda") * 0.1
        bias = torch.tensor(0.3, device="cuda")
        grad_out = torch.randn(batch, dim, device="cuda")
        out = torch.empty(batch, dim, device="cuda")
        weights = torch.empty(batch, tokens, device="cuda")
        checked(
            library,
            library.cct_cuda_sequence_pool_forward(
                x.data_ptr(),
                kernel.data_ptr(),
                bias.data_ptr(),
                out.data_ptr(),
                weights.data_ptr(),
                batch,
                tokens,
                dim,
                stream(),
            ),
        )
        grad_x, grad_kernel = torch.empty_like(x), torch.empty_like(kernel)
        grad_bias, score_grads = torch.empty((), device="cuda"), torch.empty_like(weights)
        checked(
            library,
            library.cct_cuda_sequence_pool_backward(
                x.data_ptr(),
                kernel.data_ptr(),
                weights.data_ptr(),
                grad_out.data_ptr(),
                grad_x.data_ptr(),
                grad_kernel.data_ptr(),
                grad_bias.data_ptr(),
                score_grads.data_ptr(),
                batch,
                tokens,
                dim,
                stream(),
            ),
        )
        exact_x, exact_kernel = x.double().requires_grad_(), kernel.double().requires_grad_()
        probabilities = (exact_x @ exact_kernel + 0.3).softmax(1)
        expected = (probabilities.unsqueeze(-1) * exact_x).sum(1)
        (expected * grad_out.double()).sum().backward()
        errors = {
            "output": relative(out, expected.detach()),
            "grad_tokens": relative(grad_x, exact_x.grad),
            "grad_kernel": relative(grad_kernel, exact_kernel.grad),
        }
        shape = f"pooling batch {batch} tokens {tokens} dim {dim}"
        print(shape, " ".join(f"{k} {v:.1e}" for k, v in errors.items()))
        failures += [f"{shape}: {k} {v:.1e}" for k, v in errors.items() if v > TOLERANCE]
    return failures


def milliseconds(function, repeats=50):
    for _ in range(5):
        function()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        function()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def time_attention(library):
    for batch, tokens, heads, head_dim in TIMING_SHAPES:
        qkv = torch.randn(batch, tokens, 3 * heads * head_dim, device="cuda")
        q, k, v = qkv.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        scale = head_dim**-0.5
        ours, dropped = (
            milliseconds(
                lambda qkv=qkv, heads=heads, scale=scale, rate=rate: attention(
                    library, qkv, heads, scale, rate, SEED
                )
            )
            for rate in (0.0, RATE)
        )
        sdpa = {
            str(dtype).removeprefix("torch."): milliseconds(
                lambda dtype=dtype, q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(
                    q.to(dtype), k.to(dtype), v.to(dtype)
                )
            )
            for dtype in (torch.float32, torch.float16)
        }
        print(
            f"forward batch {batch} tokens {tokens} heads {heads} head_dim {head_dim}: "
            f"cct_fast float32 {ours:.3f} ms (with dropout {RATE}: {dropped:.3f} ms); "
            "scaled_dot_product_attention "
            + ", ".join(
                f"{name} {ms:.3f} ms ({ms / ours:.0%} of ours)" for name, ms in sdpa.items()
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, help="a built libcct_fast_cuda_harness.so")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("No CUDA device: this harness checks the kernels on a GPU.")
    torch.manual_seed(0)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as directory:
        library = load(args.library or compile_library(directory))
        failures = check_attention(library) + check_dropout(library) + check_pooling(library)
        time_attention(library)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
