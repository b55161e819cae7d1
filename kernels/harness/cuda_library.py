"""The CUDA kernels' C launchers (kernels/cuda/launchers.h) as PyTorch functions, on PyTorch's
stream, for a GPU machine without TensorFlow: plain calls for the checks and timings, and
``torch.autograd.Function`` s for a model composed of them (:mod:`torch_cct`)."""

import ctypes
import subprocess
from pathlib import Path

import torch

SOURCES = Path(__file__).resolve().parents[1] / "cuda"
CUDA_SOURCES = ["attention.cu", "attention_tc.cu", "layer_norm.cu", "pooling.cu"]
DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def compile_library(directory):
    """nvcc's build of the kernels for this GPU, as CMake's cct_fast_cuda_harness target."""
    capability = "".join(map(str, torch.cuda.get_device_capability()))
    path = Path(directory) / "libcct_fast_cuda_harness.so"
    sources = [str(SOURCES / name) for name in CUDA_SOURCES]
    subprocess.run(
        ["nvcc", "-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC"]
        + [f"-arch=sm_{capability}", "-I", str(SOURCES), *sources, "-o", str(path)],
        check=True,
    )
    return path


class Kernels:
    """The launchers of one built library."""

    def __init__(self, path):
        library = ctypes.CDLL(str(path))
        i32, i64, f32, u32, ptr = (
            ctypes.c_int,
            ctypes.c_int64,
            ctypes.c_float,
            ctypes.c_uint32,
            ctypes.c_void_p,
        )
        signatures = {
            "cct_cuda_attention_forward": [ptr] * 4 + [i64] * 4 + [f32, f32, u32, u32, ptr],
            "cct_cuda_attention_backward": [ptr] * 7 + [i64] * 4 + [f32, f32, u32, u32, ptr],
            "cct_cuda_attention_forward_16bit": [i32]
            + [ptr] * 4
            + [i64] * 4
            + [f32, f32, u32, u32, ptr],
            "cct_cuda_attention_backward_16bit": [i32]
            + [ptr] * 7
            + [i64] * 4
            + [f32, f32, u32, u32, ptr],
            "cct_cuda_sequence_pool_forward": [i32] + [ptr] * 5 + [i64] * 3 + [ptr],
            "cct_cuda_sequence_pool_backward": [i32] + [ptr] * 8 + [i64] * 3 + [ptr],
            "cct_cuda_layer_norm_forward": [i32] + [ptr] * 7 + [i64, i64, f32, ptr],
            "cct_cuda_layer_norm_backward": [i32] + [ptr] * 9 + [i64, i64, ptr],
            "cct_cuda_layer_norm_partials": [i64, i64],
        }
        for name, argtypes in signatures.items():
            getattr(library, name).argtypes = argtypes
        library.cct_cuda_layer_norm_partials.restype = i64
        library.cct_cuda_error_string.restype = ctypes.c_char_p
        self.library = library

    def _call(self, name, *args):
        code = getattr(self.library, name)(*args, _stream())
        if code != 0:
            message = self.library.cct_cuda_error_string(code).decode()
            raise RuntimeError(f"{name}: {message}")

    def attention(self, qkv, heads, scale, rate=0.0, seed=(0, 0), mask=None):
        """(out, logsumexp) of packed ``qkv`` (batch, tokens, 3 * width) in its dtype."""
        batch, tokens, width = qkv.shape
        head_dim = width // (3 * heads)
        out = torch.empty(batch, tokens, heads * head_dim, device=qkv.device, dtype=qkv.dtype)
        lse = torch.empty(batch, heads, tokens, device=qkv.device)
        common = (batch, tokens, heads, head_dim, scale, keep_of(rate), *seed)
        pointers = (qkv.data_ptr(), _pointer(mask), out.data_ptr(), lse.data_ptr())
        if qkv.dtype == torch.float32:
            self._call("cct_cuda_attention_forward", *pointers, *common)
        else:
            self._call(
                "cct_cuda_attention_forward_16bit", DTYPE_CODES[qkv.dtype], *pointers, *common
            )
        return out, lse

    def attention_backward(
        self, qkv, out, lse, grad_out, heads, scale, rate=0.0, seed=(0, 0), mask=None
    ):
        batch, tokens, width = qkv.shape
        grad = torch.empty_like(qkv)
        delta = torch.empty_like(lse)
        pointers = (qkv, mask, out, lse, grad_out.contiguous(), grad, delta)
        common = (batch, tokens, heads, width // (3 * heads), scale, keep_of(rate), *seed)
        if qkv.dtype == torch.float32:
            self._call("cct_cuda_attention_backward", *map(_pointer, pointers), *common)
        else:
            self._call(
                "cct_cuda_attention_backward_16bit",
                DTYPE_CODES[qkv.dtype],
                *map(_pointer, pointers),
                *common,
            )
        return grad

    def sequence_pool(self, tokens, kernel, bias):
        """(out, weights): ``tokens`` (batch, count, dim) in any of the three dtypes, ``kernel``
        (dim,) and ``bias`` () float32."""
        batch, count, dim = tokens.shape
        out = torch.empty(batch, dim, device=tokens.device, dtype=tokens.dtype)
        weights = torch.empty(batch, count, device=tokens.device)
        self._call(
            "cct_cuda_sequence_pool_forward",
            DTYPE_CODES[tokens.dtype],
            *map(_pointer, (tokens, kernel, bias, out, weights)),
            batch,
            count,
            dim,
        )
        return out, weights

    def sequence_pool_backward(self, tokens, kernel, weights, grad_out):
        batch, count, dim = tokens.shape
        grad_tokens, grad_kernel = torch.empty_like(tokens), torch.empty_like(kernel)
        grad_bias = torch.empty((), device=tokens.device)
        score_grads = torch.empty_like(weights)
        self._call(
            "cct_cuda_sequence_pool_backward",
            DTYPE_CODES[tokens.dtype],
            *map(
                _pointer,
                (tokens, kernel, weights, grad_out.contiguous(), grad_tokens)
                + (grad_kernel, grad_bias, score_grads),
            ),
            batch,
            count,
            dim,
        )
        return grad_tokens, grad_kernel, grad_bias

    def layer_norm(self, x, gamma, beta, epsilon, residual=None):
        """(y, mean, rstd) of (residual +) LayerNorm over x's last axis."""
        rows, width = x.numel() // x.shape[-1], x.shape[-1]
        y = torch.empty_like(x)
        mean = torch.empty(x.shape[:-1], device=x.device)
        rstd = torch.empty_like(mean)
        self._call(
            "cct_cuda_layer_norm_forward",
            DTYPE_CODES[x.dtype],
            *map(_pointer, (x, residual, gamma, beta, y, mean, rstd)),
            rows,
            width,
            epsilon,
        )
        return y, mean, rstd

    def layer_norm_backward(self, x, gamma, mean, rstd, grad_y, residual=None):
        rows, width = x.numel() // x.shape[-1], x.shape[-1]
        grad_x = torch.empty_like(x)
        grad_gamma, grad_beta = torch.empty_like(gamma), torch.empty_like(gamma)
        partials = torch.empty(
            self.library.cct_cuda_layer_norm_partials(rows, width), device=x.device
        )
        self._call(
            "cct_cuda_layer_norm_backward",
            DTYPE_CODES[x.dtype],
            *map(
                _pointer,
                (x, residual, gamma, mean, rstd, grad_y.contiguous(), grad_x)
                + (grad_gamma, grad_beta, partials),
            ),
            rows,
            width,
        )
        return grad_x, grad_gamma, grad_beta


def _stream():
    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


def _pointer(tensor):
    return None if tensor is None else ctypes.c_void_p(tensor.data_ptr())


def keep_of(rate):
    """1 - rate rounded as float32 arithmetic rounds it (the TensorFlow op's keep)."""
    return float(torch.tensor(1.0, dtype=torch.float32) - torch.tensor(rate, dtype=torch.float32))


def name_of(dtype):
    """``torch.bfloat16`` -> ``"bfloat16"``, for the harness's lines."""
    return str(dtype).removeprefix("torch.")


def autograd_functions(kernels):
    """Attention, LayerNorm and sequence pooling of ``kernels`` as autograd functions."""

    class Attention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, qkv, heads, scale, rate, seed, mask):
            qkv = qkv.contiguous()
            out, lse = kernels.attention(qkv, heads, scale, rate, seed, mask)
            ctx.save_for_backward(qkv, out, lse)
            ctx.arguments = (heads, scale, rate, seed, mask)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            qkv, out, lse = ctx.saved_tensors
            grad = kernels.attention_backward(qkv, out, lse, grad_out, *ctx.arguments)
            return grad, None, None, None, None, None

    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, residual, gamma, beta, epsilon):
            x = x.contiguous()
            residual = None if residual is None else residual.contiguous()
            y, mean, rstd = kernels.layer_norm(x, gamma, beta, epsilon, residual)
            ctx.save_for_backward(x, residual, gamma, mean, rstd)
            return y

        @staticmethod
        def backward(ctx, grad_y):
            x, residual, gamma, mean, rstd = ctx.saved_tensors
            grad_x, grad_gamma, grad_beta = kernels.layer_norm_backward(
                x, gamma, mean, rstd, grad_y, residual
            )
            return grad_x, None if residual is None else grad_x, grad_gamma, grad_beta, None

    class SequencePool(torch.autograd.Function):
        @staticmethod
        def forward(ctx, tokens, kernel, bias):
            tokens = tokens.contiguous()
            out, weights = kernels.sequence_pool(tokens, kernel, bias)
            ctx.save_for_backward(tokens, kernel, weights)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            tokens, kernel, weights = ctx.saved_tensors
            return kernels.sequence_pool_backward(tokens, kernel, weights, grad_out)

    return Attention, LayerNorm, SequencePool
