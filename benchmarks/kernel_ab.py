"""A change to the CPU attention kernels against a git revision, timed in one process.

    python benchmarks/kernel_ab.py [--base HEAD] [--isa avx2] [--keep 0.9] [--rounds 20]

The speed of this shared 2-core VM moves by up to 2x within minutes, and a complete benchmark
run's rounds span +-15 %, so a kernel change worth a few percent cannot be told from noise by
timing two builds in two processes. This compiles kernels/cpu/kernels_isa.cc twice, from the
revision ``--base`` and from the working tree (``--tree`` another folder), each into its own
namespace as CMake compiles it once per instruction set, links both into one program
(kernel_ab_main.cc) and times their attention on the same inputs, alternately. For each dtype
and pass it prints the median milliseconds of each build, the median of the per-round ratios
base / tree (above 1: the working tree is faster) with their range, and the largest difference
between the two builds' outputs, so that a change meant to be about speed shows when it also
changes results. Nothing is written to RESULTS.md: the figures are for deciding a change; the
complete benchmark run measures what it does to the models.

Needs git and a C++17 compiler (``CXX``, else ``c++``); the instruction set's flags are read
from CMakeLists.txt, and the set is the one the built kernels' dispatcher picks unless
``--isa`` names one. The default shape is one CCT-7/3x1 layer at batch 64.
"""

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
KERNEL_FOLDERS = ("kernels/cpu", "kernels/common")


def dispatcher_isa(driver=None):
    """The kernel set kernels/cpu/dispatch.cc picks on this CPU (``CCT_FAST_KERNEL_ISA``
    followed), as the built ``cct_cpu_kernels`` reports it."""
    if driver is None:
        from cct_fast.compute import custom_ops

        driver = custom_ops.LIBRARY.with_name("cct_cpu_kernels")
    if not Path(driver).exists():
        raise ValueError(
            f"{driver} is not built, so the dispatcher cannot name this CPU's kernel set: "
            "build the kernels (CCT_FAST_BUILD_KERNELS=1 pip install -e .) or pass --isa"
        )
    done = subprocess.run([str(driver), "isa"], capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def isa_flags(isa, cmake_lists=REPOSITORY / "CMakeLists.txt"):
    """The compiler flags CMake builds the kernel set ``isa`` with."""
    text = cmake_lists.read_text()
    match = re.search(rf"^set\(ISA_FLAGS_{isa}\b([^)]*)\)", text, re.M)
    if match is None:
        sets = ", ".join(re.findall(r"^set\(ISA_FLAGS_(\w+)", text, re.M))
        raise ValueError(f"CMakeLists.txt sets no ISA_FLAGS_{isa}; it sets those of {sets}")
    return match.group(1).split()


def export_kernels(revision, folder):
    """The kernel sources of a git revision, unpacked under ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", "--format=tar", revision, *KERNEL_FOLDERS],
        capture_output=True,
    )
    if archive.returncode != 0:
        raise ValueError(f"git cannot export {revision!r}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return Path(folder)


def build(base_root, tree_root, isa, folder):
    """The kernel_ab program, with base_root's kernels as namespace base and tree_root's as
    tree."""
    interfaces = [
        (Path(root) / "kernels/cpu/kernels.h").read_bytes() for root in (base_root, tree_root)
    ]
    if interfaces[0] != interfaces[1]:
        raise ValueError(
            "kernels/cpu/kernels.h differs between the two: one program cannot call both"
        )
    compiler = os.environ.get("CXX", "c++")
    flags = ["-std=c++17", "-O3", *isa_flags(isa)]
    objects = []
    for name, root in (("base", base_root), ("tree", tree_root)):
        source = Path(root) / "kernels/cpu/kernels_isa.cc"
        objects.append(Path(folder) / f"{name}.o")
        subprocess.run(
            [compiler, *flags, f"-DCCT_ISA={name}", "-c", str(source), "-o", str(objects[-1])],
            check=True,
        )
    program = Path(folder) / "kernel_ab"
    main = Path(__file__).resolve().parent / "kernel_ab_main.cc"
    include = f"-I{REPOSITORY / 'kernels/cpu'}"
    subprocess.run(
        [compiler, "-std=c++17", "-O2", include, str(main), *map(str, objects), "-o", str(program)]
        + ["-lpthread"],
        check=True,
    )
    return program


def compare(program, dtype, backward, shape, keep, rounds, threads):
    """{"base": [ms...], "tree": [ms...], "max_difference": x} from one run of the program."""
    arguments = [dtype, "backward" if backward else "forward", *map(str, shape)]
    arguments += [str(keep), str(rounds), str(threads)]
    result = subprocess.run([str(program), *arguments], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def summary(times):
    """Medians and the paired ratio base / tree, round by round, with its range."""
    ratios = sorted(b / t for b, t in zip(times["base"], times["tree"], strict=True))
    return {
        "base_ms": statistics.median(times["base"]),
        "tree_ms": statistics.median(times["tree"]),
        "ratio": statistics.median(ratios),
        "ratio_low": ratios[0],
        "ratio_high": ratios[-1],
        "max_difference": times["max_difference"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare against")
    parser.add_argument("--tree", type=Path, default=REPOSITORY, help="folder with kernels/")
    parser.add_argument("--isa", default=None, help="kernel set (default: the dispatcher's)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--passes", default="forward,backward")
    parser.add_argument("--shape", default="64,256,4,64", help="batch,tokens,heads,head_dim")
    parser.add_argument("--keep", type=float, default=1.0, help="1 - attention dropout rate")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    isa = args.isa or dispatcher_isa()
    shape = [int(n) for n in args.shape.split(",")]
    folder = tempfile.mkdtemp(prefix="kernel_ab_")
    try:
        base_root = export_kernels(args.base, Path(folder) / "base")
        program = build(base_root, args.tree, isa, folder)
        print(f"{args.base} (base) against {args.tree} (tree), kernel set {isa}, shape {shape}")
        print(f"keep {args.keep}, {args.rounds} rounds, {args.threads} threads")
        print("dtype     pass      base ms  tree ms  base/tree  over rounds   max difference")
        for dtype in args.dtypes.split(","):
            for backward in ("backward" == p for p in args.passes.split(",")):
                times = compare(
                    program, dtype, backward, shape, args.keep, args.rounds, args.threads
                )
                s = summary(times)
                print(
                    f"{dtype:9s} {'backward' if backward else 'forward':9s} {s['base_ms']:7.2f} "
                    f"{s['tree_ms']:8.2f} {s['ratio']:9.3f}x  {s['ratio_low']:.3f}-"
                    f"{s['ratio_high']:.3f}x  {s['max_difference']:.3g}"
                )
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
