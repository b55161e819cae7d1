"""The CPU kernels on every instruction set they dispatch to, whatever CPU runs the suite.

``cct_cpu_kernels`` (kernels/harness/cpu_kernels_main.cc) is the op library's kernels and
dispatcher without TensorFlow. It runs here natively under each instruction set this CPU has
(``CCT_FAST_KERNEL_ISA``), and under QEMU's user-mode emulator as a CPU without AVX-512
(``-cpu Haswell``: AVX2 and FMA, so the avx2 kernels) and one without AVX (``-cpu Nehalem``:
the baseline kernels). The emulator raises SIGILL on an instruction its CPU lacks, as the real
one does. Every run is compared with the float64 reference path: attention with and without
dropout and a key-padding mask in float32 and bfloat16, sequence pooling, (residual +)
LayerNorm and bias + GELU, forward and backward. Then the op suite itself runs under each
narrower instruction set this CPU has, and ``kernels/check_isa.py``, which the build runs, is
shown to catch the fault it exists for.
"""

import functools
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from cct_fast.compute import custom_ops, fused, reference
from cct_fast.testing.philox import dropout_mask

from helpers import fixed_dropout, relative_error

ROOT = Path(__file__).resolve().parents[1]
DRIVER = custom_ops.LIBRARY.with_name("cct_cpu_kernels")
# QEMU CPU models without AVX-512, and the kernels each must get.
EMULATED = {"Haswell": "avx2", "Nehalem": "baseline"}
QEMU = shutil.which("qemu-x86_64")

pytestmark = pytest.mark.skipif(
    not custom_ops.LIBRARY.exists(), reason=str(custom_ops.unavailable_reason())
)


def _environment(isa=None):
    """This process's environment with CCT_FAST_KERNEL_ISA set to ``isa``, or unset."""
    environment = {k: v for k, v in os.environ.items() if k != custom_ops.ISA_VARIABLE}
    return environment if isa is None else {**environment, custom_ops.ISA_VARIABLE: isa}


@functools.cache
def _native_isa():
    """The widest set this CPU has, as the dispatcher finds it without being told."""
    return _run([], ["isa"], _environment()).stdout.split()[0]


def _run(prefix, arguments, environment=None):
    command = [*prefix, str(DRIVER), *map(str, arguments)]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}: exit {done.returncode}\n{done.stderr}"
    return done


def _runners():
    """(id, command prefix, environment, the kernels it must run)."""
    native = _native_isa()
    runners = []
    for isa in custom_ops.KERNEL_ISAS[custom_ops.KERNEL_ISAS.index(native) :]:
        runners.append((f"native-{isa}", [], _environment(isa), isa))
    for model, isa in EMULATED.items():
        runners.append((f"qemu-{model}", [QEMU, "-cpu", model], _environment(), isa))
    return runners


def _needs_qemu(runner_id):
    if not runner_id.startswith("qemu"):
        return
    if platform.machine() != "x86_64":
        pytest.skip(f"the emulated CPUs are x86-64; this machine is {platform.machine()}")
    if QEMU is None:
        pytest.skip("qemu-x86_64 is not installed (Debian: apt-get install qemu-user)")


@pytest.fixture(scope="module", params=["native", "qemu-Haswell", "qemu-Nehalem"])
def runners(request):
    """The runners of one kind: each instruction set this CPU has, or one emulated CPU."""
    assert DRIVER.exists(), f"{DRIVER} was not built with the library; rebuild the kernels"
    _needs_qemu(request.param)
    return [r for r in _runners() if r[0].startswith(request.param)]


class Kernels:
    """cct_cpu_kernels run one way, on arrays written to a folder."""

    def __init__(self, runner, folder):
        self.id, self.prefix, self.environment, self.isa = runner
        self.folder = folder

    def __call__(self, command, arguments, inputs, outputs):
        for name, array in inputs.items():
            array.tofile(self.folder / name)
        _run(self.prefix, [command, *arguments, self.folder], self.environment)
        return {name: np.fromfile(self.folder / name, dtype) for name, dtype in outputs.items()}


@pytest.fixture
def each_kernels(runners, tmp_path):
    return [Kernels(runner, tmp_path) for runner in runners]


def test_each_runner_gets_the_kernels_it_should(runners):
    for runner_id, prefix, environment, isa in runners:
        assert _run(prefix, ["isa"], environment).stdout.split("\n")[0] == isa, runner_id


def _bits(x, dtype):
    """The array the kernels take for ``dtype``: float32, or bfloat16's 16-bit words."""
    if dtype == "float32":
        return np.asarray(x, np.float32)
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def _values(bits, dtype):
    if dtype == "float32":
        return bits.astype(np.float64)
    return bits.view(ml_dtypes.bfloat16).astype(np.float64)


def _reference_gradients(function, tensors, cotangent):
    """function(*tensors) and its gradients against ``cotangent``, in float64."""
    tensors = [tf.constant(t, tf.float64) for t in tensors]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        y = function(*tensors)
        loss = tf.reduce_sum(y * tf.constant(cotangent, tf.float64))
    gradients = tape.gradient(loss, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [y.numpy(), *(g.numpy() for g in gradients)]


# float32 against float64: the kernels' own error. bfloat16: inputs and outputs rounded to 8
# bits, sums in float32.
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2}


def padding_mask(batch, tokens, rng):
    """A key-padding mask (batch, tokens) whose rows hold 1 real token, all of them, and random
    numbers in between, real tokens first, as the text models pad."""
    lengths = rng.integers(1, tokens + 1, batch)
    lengths[0] = 1
    if batch > 1:
        lengths[1] = tokens
    return np.arange(tokens)[None, :] < lengths[:, None]


@pytest.mark.parametrize(
    "dtype, batch, tokens, heads, head_dim, rate, masked",
    [
        ("float32", 2, 37, 3, 20, 0.0, False),  # head_dim not a multiple of any vector width
        ("float32", 1, 65, 2, 64, 0.1, False),  # two blocks of queries at every width, dropout
        ("bfloat16", 2, 33, 2, 64, 0.1, False),
        ("bfloat16", 1, 17, 1, 21, 0.0, False),  # an odd head_dim: float copies on every set
        ("float32", 3, 70, 2, 20, 0.1, True),  # key padding, two blocks, dropout
        ("bfloat16", 3, 70, 2, 64, 0.1, True),
        ("bfloat16", 3, 19, 1, 21, 0.0, True),
    ],
)
def test_attention_equals_the_reference(
    each_kernels, dtype, batch, tokens, heads, head_dim, rate, masked, rng
):
    width, scale, keep, seed = heads * head_dim, head_dim**-0.5, 1.0 - rate, (20261201, 7)
    qkv = _bits(rng.standard_normal((batch, tokens, 3 * width)), dtype)
    grad_out = _bits(rng.standard_normal((batch, tokens, width)), dtype)
    mask = padding_mask(batch, tokens, rng) if masked else None
    dropout = None
    if rate:
        dropout = fixed_dropout(np.float32(keep), dropout_mask(batch, heads, tokens, keep, seed))
    expected_out, expected_grad = _reference_gradients(
        lambda x: reference.attention(x, heads, scale, dropout=dropout, mask=mask),
        [_values(qkv, dtype)],
        _values(grad_out, dtype),
    )
    bits = np.float32 if dtype == "float32" else np.uint16
    inputs = {"qkv": qkv, "grad_out": grad_out}
    if masked:
        inputs["mask"] = mask.astype(np.uint8)
    for kernels in each_kernels:
        got = kernels(
            "attention",
            [dtype, batch, tokens, heads, head_dim, scale, keep, *seed],
            inputs,
            {"out": bits, "grad_qkv": bits},
        )
        for name, expected in (("out", expected_out), ("grad_qkv", expected_grad)):
            error = relative_error(_values(got[name], dtype), expected.reshape(-1))
            assert error <= TOLERANCE[dtype], (kernels.id, name, error)


@pytest.mark.parametrize("batch, tokens, dim", [(2, 37, 20), (1, 1, 8)])
def test_sequence_pooling_equals_the_reference(each_kernels, batch, tokens, dim, rng):
    tokens_ = rng.standard_normal((batch, tokens, dim)).astype(np.float32)
    kernel = (rng.standard_normal(dim) * 0.3).astype(np.float32)
    bias = np.array([0.2], np.float32)
    grad_out = rng.standard_normal((batch, dim)).astype(np.float32)

    def pooled(tokens, kernel, bias):
        return reference.sequence_pool(
            lambda t: tf.einsum("bnd,d->bn", t, kernel)[..., None] + bias, tokens
        )

    out, grad_tokens, grad_kernel, grad_bias = _reference_gradients(
        pooled, [tokens_, kernel, bias], grad_out
    )
    for kernels in each_kernels:
        got = kernels(
            "pool",
            [batch, tokens, dim],
            {"tokens": tokens_, "kernel": kernel, "bias": bias, "grad_out": grad_out},
            dict.fromkeys(("out", "grad_tokens", "grad_kernel", "grad_bias"), np.float32),
        )
        for name, expected in (
            ("out", out),
            ("grad_tokens", grad_tokens),
            ("grad_kernel", grad_kernel),
        ):
            error = relative_error(got[name], expected.reshape(-1))
            assert error <= 1e-5, (kernels.id, name, error)
        # The softmax ignores a shift of all scores, so the bias's gradient is zero: what the
        # kernel sums is rounding, small beside the kernel's gradient.
        assert abs(got["grad_bias"][0] - grad_bias[0]) <= 1e-5 * np.abs(grad_kernel).max()


@pytest.mark.parametrize(
    "dtype, rows, width, residual",
    [("float32", 37, 100, True), ("float32", 5, 7, False), ("bfloat16", 9, 48, True)],
)
def test_layer_norm_equals_the_reference(each_kernels, dtype, rows, width, residual, rng):
    x = _bits(rng.standard_normal((rows, width)) * 3 + 0.5, dtype)
    r = _bits(rng.standard_normal((rows, width)), dtype)
    gamma = (rng.standard_normal(width) + 1).astype(np.float32)
    beta = rng.standard_normal(width).astype(np.float32)
    grad_y = _bits(rng.standard_normal((rows, width)), dtype)

    def normalized(x, r, gamma, beta):
        centred = (x + r) if residual else x
        mean, variance = tf.nn.moments(centred, axes=[-1], keepdims=True)
        return (centred - mean) * tf.math.rsqrt(variance + fused.LAYER_NORM_EPSILON) * gamma + beta

    expected_y, grad_x, _, grad_gamma, grad_beta = _reference_gradients(
        normalized, [_values(x, dtype), _values(r, dtype), gamma, beta], _values(grad_y, dtype)
    )
    bits = np.float32 if dtype == "float32" else np.uint16
    inputs = {"x": x, "gamma": gamma, "beta": beta, "grad_y": grad_y}
    if residual:
        inputs["residual"] = r
    for kernels in each_kernels:
        got = kernels(
            "layer_norm",
            [dtype, rows, width, fused.LAYER_NORM_EPSILON, int(residual)],
            inputs,
            {"y": bits, "grad_x": bits, "grad_gamma": np.float32, "grad_beta": np.float32},
        )
        for name, expected, value in (
            ("y", expected_y, _values(got["y"], dtype)),
            ("grad_x", grad_x, _values(got["grad_x"], dtype)),
            ("grad_gamma", grad_gamma, got["grad_gamma"]),
            ("grad_beta", grad_beta, got["grad_beta"]),
        ):
            error = relative_error(value, expected.reshape(-1))
            assert error <= TOLERANCE[dtype], (kernels.id, name, error)


@pytest.mark.parametrize("dtype, rows, width", [("float32", 70, 100), ("bfloat16", 3, 7)])
def test_bias_gelu_equals_the_reference(each_kernels, dtype, rows, width, rng):
    x = _bits(rng.standard_normal((rows, width)) * 3, dtype)
    bias = rng.standard_normal(width).astype(np.float32)
    grad_y = _bits(rng.standard_normal((rows, width)), dtype)

    def gelu(x, bias):
        s = x + bias
        return 0.5 * s * (1.0 + tf.math.erf(s / np.sqrt(2.0)))

    expected_y, grad_x, grad_bias = _reference_gradients(
        gelu, [_values(x, dtype), bias], _values(grad_y, dtype)
    )
    bits = np.float32 if dtype == "float32" else np.uint16
    for kernels in each_kernels:
        got = kernels(
            "bias_gelu",
            [dtype, rows, width],
            {"x": x, "bias": bias, "grad_y": grad_y},
            {"y": bits, "grad_x": bits, "grad_bias": np.float32},
        )
        for name, expected, value in (
            ("y", expected_y, _values(got["y"], dtype)),
            ("grad_x", grad_x, _values(got["grad_x"], dtype)),
            ("grad_bias", grad_bias, got["grad_bias"]),
        ):
            error = relative_error(value, expected.reshape(-1))
            assert error <= TOLERANCE[dtype], (kernels.id, name, error)


def test_an_instruction_set_the_cpu_lacks_is_refused_by_name():
    """CCT_FAST_KERNEL_ISA never makes the kernels run what the CPU cannot: the dispatcher
    keeps the widest set and says why; the Python side raises that as a ConfigError."""
    widest = _native_isa()
    for requested, reason in (("avx9", "is not one of avx512_bf16"), ("avx512", "at most avx2")):
        environment = _environment(requested)
        prefix = [] if requested == "avx9" else [QEMU, "-cpu", "Haswell"]
        if prefix and QEMU is None:
            continue  # the native half still ran
        isa, message = _run(prefix, ["isa"], environment).stdout.splitlines()
        assert isa == (widest if requested == "avx9" else "avx2")
        assert reason in message
    environment = _environment("avx9")
    done = subprocess.run(
        [sys.executable, "-c", "from cct_fast.compute import custom_ops; custom_ops.ops()"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert done.returncode == 1
    assert "ConfigError: CCT_FAST_KERNEL_ISA=avx9 is not one of" in done.stderr
    assert "unset CCT_FAST_KERNEL_ISA" in done.stderr


OP_SUITE = (
    "tests/test_kernels.py",
    "tests/test_layer_norm_op.py",
    "tests/test_bias_gelu_op.py",
    "tests/test_attention_dropout.py",
    "tests/test_drop_path_ops.py",
)
# Tests of that suite that no kernel runs in (export, dispatch, a missing library): the native
# run covers them, the narrower sets' reruns leave them out (CI's time budget).
NOT_KERNEL_TESTS = (
    "not onnx_exports and not missing_library and not each_device_runs and not auto_takes"
)


def _narrower_sets():
    native = _native_isa()
    return custom_ops.KERNEL_ISAS[custom_ops.KERNEL_ISAS.index(native) + 1 :]


@pytest.fixture(scope="module")
def op_suite_runs(tmp_path_factory):
    """The op suite under each narrower set, all started at once: each run is mostly
    single-threaded Python (imports, traces), so side by side on CI's two cores they take
    about half the time they take in turn. isa -> (process, its output file)."""
    folder = tmp_path_factory.mktemp("op_suite")
    runs = {}
    for isa in _narrower_sets():
        output = folder / f"{isa}.txt"
        with output.open("w") as sink:
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            command += ["-k", NOT_KERNEL_TESTS, *OP_SUITE]
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=_environment(isa)
            )
        runs[isa] = process, output
    yield runs
    for process, _ in runs.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("isa", custom_ops.KERNEL_ISAS[1:])
def test_the_op_suite_passes_under_each_narrower_instruction_set(isa, op_suite_runs):
    """The TensorFlow ops' own tests, on the kernels of a CPU narrower than this one."""
    if isa not in op_suite_runs:
        pytest.skip(f"the suite itself runs {_native_isa()}; {isa} is not narrower than it")
    process, output = op_suite_runs[isa]
    returncode = process.wait(timeout=1200)
    printed = output.read_text()
    summary = printed.strip().splitlines()[-1]
    assert returncode == 0, printed[-4000:]
    assert " passed" in summary and "skipped" not in summary, summary


# An inline function that two per-ISA files both compile, as std::vector's members were: the
# linker keeps one copy, here the AVX-512 file's (it comes first).
MERGED_INLINE = {
    "shared.h": """
        #pragma once
        inline __attribute__((noinline)) void Fill(float* p, int n, float v) {
          for (int i = 0; i < n; ++i) p[i] = v;
        }
        #define RUN(ns) namespace cct_kernels { namespace ns { \\
          void Run(float* p, int n) { Fill(p, n, 1.0f); for (int i = 0; i < n; ++i) p[i] *= 3; } \\
        } }
    """,
    "wide.cc": '#include "shared.h"\nRUN(avx512)\n',
    "narrow.cc": '#include "shared.h"\nRUN(avx2)\n',
    "main.cc": """
        namespace cct_kernels { namespace avx2 { void Run(float* p, int n); } }
        int main() { float p[256]; cct_kernels::avx2::Run(p, 256); return p[0] == 3 ? 0 : 1; }
    """,
}


@pytest.fixture(scope="module")
def merged_inline_program(tmp_path_factory):
    if shutil.which("g++") is None or platform.machine() != "x86_64":
        pytest.skip("needs g++ for x86-64")
    folder = tmp_path_factory.mktemp("merged_inline")
    for name, text in MERGED_INLINE.items():
        (folder / name).write_text(text)
    flags = {"wide.cc": ["-mavx512f", "-mprefer-vector-width=512"], "narrow.cc": ["-mavx2"]}
    for name in ("wide.cc", "narrow.cc", "main.cc"):
        subprocess.run(
            ["g++", "-O3", "-c", *flags.get(name, []), name], cwd=folder, check=True, timeout=120
        )
    subprocess.run(
        ["g++", "wide.o", "narrow.o", "main.o", "-o", "program"],
        cwd=folder,
        check=True,
        timeout=120,
    )
    return folder / "program"


def _check_isa(*files):
    return subprocess.run(
        [sys.executable, str(ROOT / "kernels" / "check_isa.py"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_build_check_refuses_an_inline_function_merged_across_instruction_sets(
    merged_inline_program,
):
    done = _check_isa(merged_inline_program)
    assert done.returncode == 1
    problems = done.stderr.split(f"{merged_inline_program}: ")[1:]
    assert len(problems) == 3, done.stderr
    assert problems[0].startswith("the avx512 kernels call code compiled outside their own")
    assert problems[1].startswith("the avx2 kernels call code compiled outside their own")
    assert problems[2].startswith("the avx2 kernels reach EVEX (AVX-512) code")
    assert all("-> Fill(float*, int, float)" in problem for problem in problems)


def test_the_built_kernels_pass_the_build_check():
    done = _check_isa(custom_ops.LIBRARY, DRIVER)
    assert (done.returncode, done.stderr) == (0, "")


def test_an_emulated_cpu_without_avx512_dies_on_that_program(merged_inline_program):
    """What the QEMU runs above would show of such a build: SIGILL, as on the real CPU."""
    if QEMU is None:
        pytest.skip("qemu-x86_64 is not installed (Debian: apt-get install qemu-user)")
    done = subprocess.run(
        [QEMU, "-cpu", "Haswell", str(merged_inline_program)], capture_output=True, timeout=120
    )
    assert done.returncode == -4  # SIGILL
