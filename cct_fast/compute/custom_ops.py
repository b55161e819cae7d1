"""The optional custom ops: fused attention and sequence pooling from ``kernels/``.

CMake builds them into ``cct_fast/libcct_fast_ops.so`` (``CCT_FAST_BUILD_KERNELS=1 pip install
-e .``, or ``cmake -S . -B build && cmake --build build``). Models built with
``implementation="custom"`` run them where they can and the fused path of :mod:`cct_fast.fused`
where they cannot, saying why once:

- the library is not built or does not load;
- the model runs on a GPU and the library has no CUDA kernels;
- the call is compiled by XLA (``jit_compile=True``): XLA cannot compile custom ops;
- the inputs have a dtype without a kernel (the CPU kernels take float32 and bfloat16, the
  CUDA kernels float32);
- attention dropout is active (training with ``attention_dropout > 0``): the kernel has none.

``implementation="auto"`` runs them only where they were measured faster than the fused path
(``AUTO_PREFERS_CUSTOM``), and says nothing when it does not. ONNX exports never contain them:
export rebuilds the model in the reference implementation.
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import tensorflow as tf

from cct_fast.fused import in_xla_context

LIBRARY = Path(__file__).with_name("libcct_fast_ops.so")
BUILD_HINT = "build it with `CCT_FAST_BUILD_KERNELS=1 pip install -e .` (needs cmake and g++)"
# Device type -> whether "auto" takes the custom ops there: only where they beat the fused
# path by 1.3x on a whole model (benchmarks/RESULTS.md: 1.00-1.15x on the 2-core AVX-512 CPU;
# not measured on a GPU).
AUTO_PREFERS_CUSTOM = {"CPU": False, "GPU": False}
KERNEL_DTYPES = {"CPU": ("float32", "bfloat16"), "GPU": ("float32",)}
_explained = set()
_gradients_registered = False


def _explain_once(reason):
    if reason not in _explained:
        _explained.add(reason)
        warnings.warn(f"cct_fast: the custom ops are not used: {reason}; running the fused "
                      f"path instead.", RuntimeWarning, stacklevel=3)


@functools.cache
def _loaded():
    """(op module, None) or (None, why not)."""
    if not LIBRARY.exists():
        return None, f"{LIBRARY.name} is not built ({BUILD_HINT})"
    try:
        module = tf.load_op_library(str(LIBRARY))
    except (tf.errors.NotFoundError, OSError) as error:
        return None, f"{LIBRARY} does not load ({error}); rebuild it against this TensorFlow"
    _register_gradients(module)
    return module, None


def ops():
    """The op module, or None where the library is missing (see :func:`unavailable_reason`)."""
    return _loaded()[0]


def unavailable_reason():
    return _loaded()[1]


def cpu_isa():
    """The instruction set the CPU kernels run with: avx512_bf16, avx512, avx2 or baseline."""
    if ops() is None:
        return None
    function = ctypes.CDLL(str(LIBRARY)).CctKernelIsa
    function.restype = ctypes.c_char_p
    return function().decode()


def has_cuda_kernels():
    return ops() is not None and hasattr(ctypes.CDLL(str(LIBRARY)), "CctKernelHasCuda")


def _register_gradients(module):
    """Once per process: TensorFlow refuses a second registration of a name."""
    global _gradients_registered
    if _gradients_registered:
        return
    _gradients_registered = True

    @tf.RegisterGradient("CctFusedAttention")
    def _attention_gradient(op, grad_output, _grad_logsumexp):
        # logsumexp is an internal output, never differentiated.
        return module.cct_fused_attention_grad(
            op.inputs[0], op.outputs[0], op.outputs[1], grad_output,
            num_heads=op.get_attr("num_heads"), scale=op.get_attr("scale"))

    @tf.RegisterGradient("CctSequencePool")
    def _pool_gradient(op, grad_output, _grad_weights):
        # The weights output is returned for inspection only; sequence_pool() drops it.
        return module.cct_sequence_pool_grad(op.inputs[0], op.inputs[1], op.outputs[1],
                                             grad_output)


def _device_type():
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def runs_custom(implementation, dtype=tf.float32, attention_dropout=False):
    """Whether a layer built with ``implementation`` runs a custom op in this call, on inputs
    of ``dtype``."""
    if implementation not in ("custom", "auto"):
        return False
    device = _device_type()
    if implementation == "auto" and not AUTO_PREFERS_CUSTOM[device]:
        return False
    dtypes = KERNEL_DTYPES[device]
    reason = None
    if ops() is None:
        reason = unavailable_reason()
    elif device == "GPU" and not has_cuda_kernels():
        reason = "the library was built without CUDA kernels and the model runs on a GPU"
    elif tf.as_dtype(dtype).name not in dtypes:
        reason = f"the {device} kernels take {' or '.join(dtypes)}, not {tf.as_dtype(dtype).name}"
    elif in_xla_context():
        reason = "XLA (jit_compile=True) cannot compile custom ops"
    elif attention_dropout:
        reason = "the attention kernel has no dropout (set attention_dropout=0 to train with it)"
    if reason is not None:
        if implementation == "custom":
            _explain_once(reason)
        return False
    return True


def fused_attention(qkv, num_heads, scale):
    """softmax(scale * q k^T) v per head of ``qkv`` (batch, tokens, 3 * width) packed as
    (3, num_heads, head_dim); returns (batch, tokens, width) with the heads merged."""
    output, _ = ops().cct_fused_attention(qkv, num_heads=num_heads, scale=scale)
    return output


def sequence_pool(tokens, kernel, bias):
    """softmax over tokens of ``tokens @ kernel + bias``, then the weighted sum: (B, N, D) ->
    (B, D), in float32. ``kernel`` is (D,) and ``bias`` a scalar."""
    output, _ = ops().cct_sequence_pool(tokens, kernel, bias)
    return output
