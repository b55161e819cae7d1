"""What of the CUDA side runs without a GPU: the standalone kernels library's C launchers (their
host-side answers), and the GPU harness's own references (kernels/harness), which must compute
what the CPU kernels and the zoo compute for its checks to mean anything on a GPU machine."""

import ctypes
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.compute import custom_ops

torch = pytest.importorskip("torch")
HARNESS = Path(__file__).resolve().parents[1] / "kernels" / "harness"
LAUNCHERS = Path(__file__).resolve().parents[1] / "kernels" / "cuda" / "launchers.h"
sys.path.insert(0, str(HARNESS))
import check_cuda  # noqa: E402
import torch_cct  # noqa: E402


@pytest.fixture(scope="module")
def harness_library():
    path = custom_ops.LIBRARY.with_name("libcct_fast_cuda_harness.so")
    if not path.exists():
        pytest.skip("the CUDA kernels were not built here (no nvcc)")
    return ctypes.CDLL(str(path))


def test_the_harness_library_exports_every_launcher_the_header_declares(harness_library):
    names = re.findall(r"CCT_CUDA_EXPORT [\w\s*]+?\b(cct_cuda_\w+)\(", LAUNCHERS.read_text())
    assert len(names) == 10
    missing = [name for name in names if not hasattr(harness_library, name)]
    assert missing == []


def test_the_launchers_answer_bad_calls_before_touching_a_gpu(harness_library):
    library = harness_library
    library.cct_cuda_error_string.restype = ctypes.c_char_p
    messages = {code: library.cct_cuda_error_string(code).decode() for code in (-1, -2, -3, -4)}
    assert "head_dim must be 16, 32, 64 or 128" in messages[-1]
    assert "16-byte aligned" in messages[-2]
    assert "compute capability 8.0" in messages[-3]
    assert "CCT_CUDA_BFLOAT16 or CCT_CUDA_FLOAT16" in messages[-4]
    library.cct_cuda_layer_norm_partials.restype = ctypes.c_int64
    library.cct_cuda_layer_norm_partials.argtypes = [ctypes.c_int64] * 2
    assert library.cct_cuda_layer_norm_partials(300, 256) == 2 * 3 * 256  # chunks of 128 rows
    forward = library.cct_cuda_layer_norm_forward
    forward.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 7
    forward.argtypes += [ctypes.c_int64, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p]
    assert forward(7, *[None] * 7, 4, 4, 1e-5, None) == -4  # an unknown dtype code
    attention = library.cct_cuda_attention_forward_16bit
    attention.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4
    attention.argtypes += [ctypes.c_float, ctypes.c_float, ctypes.c_uint32, ctypes.c_uint32]
    attention.argtypes += [ctypes.c_void_p]
    assert attention(1, *[None] * 4, 0, 8, 2, 64, 0.125, 1.0, 0, 0, None) == 0  # an empty batch


def test_the_harness_reference_masks_as_the_cpu_kernels_do(rng):
    """check_cuda.py judges the GPU's masked attention by its float64 reference: it must be the
    CPU op's semantics (padded queries attend uniformly and pass no gradient to their scores)."""
    batch, tokens, heads, head_dim = 3, 19, 2, 16
    qkv = rng.standard_normal((batch, tokens, 3 * heads * head_dim)).astype("float32")
    grad_out = rng.standard_normal((batch, tokens, heads * head_dim)).astype("float32")
    mask = np.arange(tokens)[None, :] < np.array([19, 7, 1])[:, None]
    scale = head_dim**-0.5
    exact = torch.tensor(qkv, dtype=torch.float64, requires_grad=True)
    expected, _ = check_cuda.reference_attention(exact, heads, scale, mask=torch.tensor(mask))
    (expected * torch.tensor(grad_out, dtype=torch.float64)).sum().backward()
    variable = tf.Variable(qkv)
    with tf.GradientTape() as tape:
        out = custom_ops.attention(variable, heads, scale, mask=mask)
        loss = tf.reduce_sum(out * grad_out)
    grad = tape.gradient(loss, variable)

    def relative(actual, wanted):
        wanted = wanted.detach().numpy()
        return np.linalg.norm(actual.numpy() - wanted) / np.linalg.norm(wanted)

    assert relative(out, expected) < 1e-5
    assert relative(grad, exact.grad) < 1e-5


def test_the_harness_cct_is_cct_7_3x1_in_size_and_trains_on_the_cpu():
    """The GPU training-step comparison composes this model: it must be the zoo's CCT-7/3x1."""
    zoo = cct_fast.create_model("cct_7_3x1_32", num_classes=10)
    torch.manual_seed(0)
    model = torch_cct.CCT(torch_cct.TorchOps())
    assert sum(p.numel() for p in model.parameters()) == zoo.count_params()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    logits = model(images)
    assert logits.shape == (2, 10)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
