"""Functions compiled by XLA on their own, and inlined where XLA already compiles the caller."""

import functools
import warnings

import tensorflow as tf

try:  # No public API tells whether a graph is being compiled by XLA.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
except ImportError:  # pragma: no cover - a TensorFlow without it
    GraphOrParentsInXlaContext = None


def in_xla_context():
    """Whether the graph being traced is compiled by XLA (``jit_compile=True``).

    Without TensorFlow's private ``GraphOrParentsInXlaContext`` this cannot be known and is
    taken as False, with a warning: under ``compile(jit_compile=True)`` the XLA functions of
    :mod:`cct_fast.compute.fused` are then compiled again at every gradient step.
    """
    if GraphOrParentsInXlaContext is None:
        _warn_no_xla_context()
        return False
    return GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@functools.cache
def _warn_no_xla_context():
    warnings.warn(
        "cct_fast: this TensorFlow has no control_flow_util.GraphOrParentsInXlaContext, so "
        "cct_fast cannot tell when XLA compiles a model; under jit_compile=True each fused "
        "step is compiled again at every training step (seconds instead of milliseconds). "
        "Train with jit_compile=False, or implementation='reference'.",
        RuntimeWarning,
        stacklevel=3,
    )


@functools.cache
def warn_if_no_gpu():
    """Once per process, where no GPU is visible: a model compiled whole by XLA runs slower
    than the default graph path on a CPU. XLA still compiles it, as asked."""
    if tf.config.list_logical_devices("GPU"):
        return
    warnings.warn(
        "cct_fast: jit_compile=True on a machine without a GPU. XLA's CPU backend uses neither "
        "oneDNN's batched nor its bfloat16 matrix products, so a whole model under XLA runs "
        "slower here than the default graph path, which already compiles the small steps "
        "with XLA (CCT-7/3x1 inference measured 0.89x in float32 and 0.53x in bfloat16 on a "
        "2-core AVX-512 CPU; the XLA flags xla_cpu_use_onednn and xla_cpu_use_xnnpack change "
        "it by a few percent; benchmarks/RESULTS.md). On CPUs leave jit_compile=False; the "
        "model is compiled with XLA as asked.",
        RuntimeWarning,
        stacklevel=4,
    )


def compiled(function):
    """``tf.function(jit_compile=True)`` that takes Keras variables as well as tensors (a Keras
    variable is not a ``tf.Variable``, and tf.function would trace it as a Python object).

    Inside a graph that XLA already compiles (``compile(jit_compile=True)``) the function is
    inlined instead: a nested XLA function there is compiled again at every gradient step.
    """
    xla_function = tf.function(function, jit_compile=True)

    @functools.wraps(function)
    def call(*args):
        if in_xla_context():
            return function(*args)
        return xla_function(*(tf.convert_to_tensor(arg) for arg in args))

    return call
