"""benchmarks/kernel_ab.py: two builds of the attention kernels timed in one program, and the
difference between their outputs."""

import os
import shutil

import kernel_ab
import pytest

COMPILER = os.environ.get("CXX", "c++")
SHAPE = (2, 40, 2, 16)  # 40 tokens: a whole query block and a partial one
EXP_COEFFICIENT = "5.0000001201e-1f"  # vectors.h's Exp: the polynomial's r^2 term


@pytest.fixture(scope="module")
def head_kernels(tmp_path_factory):
    return kernel_ab.export_kernels("HEAD", tmp_path_factory.mktemp("head"))


needs_compiler = pytest.mark.skipif(shutil.which(COMPILER) is None, reason=f"no {COMPILER}")


@pytest.fixture(scope="module")
def isa():
    """The set the built kernels' dispatcher picks here; the programs are built for it."""
    try:
        return kernel_ab.dispatcher_isa()
    except ValueError as not_built:
        pytest.skip(str(not_built))


@pytest.fixture(scope="module")
def same_kernels_program(head_kernels, isa, tmp_path_factory):
    folder = tmp_path_factory.mktemp("program")
    return kernel_ab.build(head_kernels, head_kernels, isa, folder)


@needs_compiler
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_the_same_kernels_agree_exactly_and_are_timed_each_round(
    same_kernels_program, dtype, backward
):
    times = kernel_ab.compare(
        same_kernels_program, dtype, backward, SHAPE, keep=0.9, rounds=3, threads=2
    )
    assert times["max_difference"] == 0
    assert len(times["base"]) == len(times["tree"]) == 3
    assert min(times["base"] + times["tree"]) > 0
    summary = kernel_ab.summary(times)
    assert summary["ratio_low"] <= summary["ratio"] <= summary["ratio_high"]
    assert summary["ratio"] == pytest.approx(
        sorted(b / t for b, t in zip(times["base"], times["tree"], strict=True))[1]
    )


@needs_compiler
def test_a_change_in_the_results_shows_as_a_difference(head_kernels, isa, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(head_kernels, changed)
    vectors = changed / "kernels/cpu/vectors.h"
    text = vectors.read_text()
    assert EXP_COEFFICIENT in text, "this test alters Exp's polynomial: update EXP_COEFFICIENT"
    vectors.write_text(text.replace(EXP_COEFFICIENT, "5.01e-1f"))
    program = kernel_ab.build(head_kernels, changed, isa, tmp_path)
    for backward in (False, True):
        times = kernel_ab.compare(
            program, "float32", backward, SHAPE, keep=1.0, rounds=1, threads=1
        )
        assert 1e-7 < times["max_difference"] < 1e-2


def test_the_kernel_set_is_the_dispatchers_and_its_flags_come_from_cmake(monkeypatch):
    from cct_fast.compute import custom_ops

    if custom_ops.ops() is None:
        pytest.skip(str(custom_ops.unavailable_reason()))
    monkeypatch.delenv(custom_ops.ISA_VARIABLE, raising=False)
    assert kernel_ab.dispatcher_isa() == custom_ops.cpu_isa()
    monkeypatch.setenv(custom_ops.ISA_VARIABLE, "baseline")
    assert kernel_ab.dispatcher_isa() == "baseline"
    assert kernel_ab.isa_flags("avx2") == ["-mavx2", "-mfma"]
    assert kernel_ab.isa_flags("baseline") == []


def test_bad_requests_say_what_was_wrong(head_kernels, tmp_path):
    with pytest.raises(ValueError, match="no-such-revision"):
        kernel_ab.export_kernels("no-such-revision", tmp_path / "missing")
    with pytest.raises(ValueError, match="ISA_FLAGS_avx1024; it sets those of avx512_bf16, "):
        kernel_ab.isa_flags("avx1024")
    with pytest.raises(ValueError, match="missing_driver is not built.*pass --isa"):
        kernel_ab.dispatcher_isa(tmp_path / "missing_driver")
    changed = tmp_path / "changed"
    shutil.copytree(head_kernels, changed)
    with open(changed / "kernels/cpu/kernels.h", "a") as header:
        header.write("// another interface\n")
    with pytest.raises(ValueError, match="kernels.h differs"):
        kernel_ab.build(head_kernels, changed, "baseline", tmp_path)
