"""What each CPU gets from the custom ops: the same figures under every instruction set of
the CPU kernels that this CPU can run, one process per set (``CCT_FAST_KERNEL_ISA``).

    python benchmarks/kernel_isas.py [--steps 4] [--repeats 3]

Per set: the attention op of one CCT-7/3x1 layer (batch 64, 256 tokens, 4 heads of 64),
forward + backward, in float32 and bfloat16; and the CCT-7/3x1 training step and inference
at batch 64 with ``implementation="custom"``, in float32 and mixed_bfloat16. The fused path,
which uses no custom kernel, is timed in each process too, as the yardstick. oneDNN, which runs
TensorFlow's GEMMs, is held to the same set (``ONEDNN_MAX_CPU_ISA``), so that a row
approximates such a CPU: on an AVX-512 host the avx2 row's fused path runs AVX2 GEMMs, as it
would on an AVX2 CPU. TensorFlow's bfloat16 matmul does not run under an AVX2 or SSE4.1 limit
(oneDNN refuses the primitive), so those rows have no bfloat16 figures. Writes the kernel-isas
block of RESULTS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import cct_fast  # noqa: E402
from cct_fast.compute import custom_ops  # noqa: E402

from profile_layer import best_milliseconds  # noqa: E402
from results_file import write_block  # noqa: E402
from workloads import ATTENTION_SHAPE, attention_functions  # noqa: E402

ISA_VARIABLE = custom_ops.ISA_VARIABLE
TRAIN_NAME, TRAIN_BATCH = "cct_7_3x1_32", 64
# oneDNN's limit per kernel set, and the sets whose limit leaves TensorFlow a bfloat16 matmul.
ONEDNN_LIMITS = {
    "avx512_bf16": "AVX512_CORE_BF16",
    "avx512": "AVX512_CORE",
    "avx2": "AVX2",
    "baseline": "SSE41",
}
BFLOAT16_SETS = ("avx512_bf16", "avx512")


def attention_milliseconds(dtype, repeats):
    """{"fused path": ms, "custom op": ms} for one layer's attention, forward + backward."""
    functions = attention_functions(dtype=dtype, **ATTENTION_SHAPE)
    width = ATTENTION_SHAPE["heads"] * ATTENTION_SHAPE["head_dim"]
    shape = (ATTENTION_SHAPE["batch"], ATTENTION_SHAPE["tokens"], 3 * width)
    qkv = tf.cast(tf.random.stateless_normal(shape, (0, 0)), dtype)
    return {
        row: best_milliseconds(functions[row + ", forward + backward"], qkv, repeats=repeats)
        for row in ("fused path", "custom op")
    }


def train_images_per_second(implementation, policy, steps, repeats):
    """Images per second of AdamW steps of CCT-7/3x1 at batch 64 (the best of ``repeats``
    runs of ``steps`` steps)."""
    model = cct_fast.create_model(TRAIN_NAME, implementation=implementation, dtype=policy)
    model.compile(
        optimizer=keras.optimizers.AdamW(5e-4, weight_decay=0.06),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    images = rng.standard_normal((TRAIN_BATCH, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, TRAIN_BATCH)
    model.train_on_batch(images, labels)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(images, labels)
        best = min(best, (time.perf_counter() - start) / steps)
    return TRAIN_BATCH / best


def inference_images_per_second(implementation, policy, repeats):
    """Images per second of CCT-7/3x1 inference at batch 64 (the best of ``repeats`` runs of
    four calls), one compiled call per batch as the benchmark's rows run it."""
    model = cct_fast.create_model(TRAIN_NAME, implementation=implementation, dtype=policy)
    images = tf.constant(np.random.default_rng(0).standard_normal((TRAIN_BATCH, 32, 32, 3)))
    function = tf.function(lambda x: model(x, training=False))
    milliseconds = best_milliseconds(
        lambda x: function(x).numpy(), images, repeats=repeats, calls=4
    )
    return TRAIN_BATCH / milliseconds * 1e3


def measure(steps, repeats):
    """This process's figures, under the instruction set CCT_FAST_KERNEL_ISA names."""
    figures = {"isa": custom_ops.cpu_isa()}
    precisions = [("fp32", tf.float32, "float32"), ("bf16", tf.bfloat16, "mixed_bfloat16")]
    if figures["isa"] not in BFLOAT16_SETS:
        precisions = precisions[:1]
    for precision, dtype, policy in precisions:
        attention = attention_milliseconds(dtype, repeats)
        figures[f"attention {precision}"] = attention
        figures[f"train {precision}"] = {
            implementation: train_images_per_second(implementation, policy, steps, repeats)
            for implementation in ("fused", "custom")
        }
        figures[f"inference {precision}"] = {
            implementation: inference_images_per_second(implementation, policy, repeats)
            for implementation in ("fused", "custom")
        }
    return figures


def runnable_sets():
    """The instruction sets of the kernels that this CPU can run, widest first."""
    widest = custom_ops.cpu_isa() if ISA_VARIABLE not in os.environ else None
    if widest is None:
        raise SystemExit(
            f"needs the custom ops built and {ISA_VARIABLE} unset: "
            f"{custom_ops.unavailable_reason() or os.environ.get(ISA_VARIABLE)}"
        )
    return custom_ops.KERNEL_ISAS[custom_ops.KERNEL_ISAS.index(widest) :]


def table(results):
    lines = [
        "| kernels | attention fwd+bwd fp32, ms (fused path) | bf16 | "
        "train step fp32, img/s (fused) | mixed_bfloat16 | inference fp32, img/s (fused) | "
        "mixed_bfloat16 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for figures in results:
        cells = []
        for precision in ("fp32", "bf16"):
            attention = figures.get(f"attention {precision}")
            cells.append(
                f"{attention['custom op']:.1f} ({attention['fused path']:.1f})"
                if attention
                else "n/a"
            )
        for mode in ("train", "inference"):
            for precision in ("fp32", "bf16"):
                rates = figures.get(f"{mode} {precision}")
                ratio = rates and rates["custom"] / rates["fused"]
                cells.append(
                    f"{rates['custom']:.1f} ({rates['fused']:.1f}): {ratio:.2f}x"
                    if rates
                    else "n/a"
                )
        lines.append(f"| {figures['isa']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.steps, args.repeats)))
        return
    results = []
    for isa in runnable_sets():
        env = dict(os.environ, **{ISA_VARIABLE: isa, "ONEDNN_MAX_CPU_ISA": ONEDNN_LIMITS[isa]})
        worker = subprocess.run(
            [sys.executable, __file__, "--worker", f"--steps={args.steps}"]
            + [f"--repeats={args.repeats}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(worker.stdout.strip().splitlines()[-1]))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    command = " ".join(["python benchmarks/kernel_isas.py", *sys.argv[1:]])
    write_block(
        "kernel-isas",
        command,
        "### The custom ops under each instruction set of the CPU kernels\n\n"
        "CCT-7/3x1: one layer's attention (batch 64, 256 tokens, 4 heads of 64), and the "
        'AdamW step and inference at batch 64 with `implementation="custom"` against `"fused"` '
        "(in brackets). Each row runs the kernels of its set and holds oneDNN, TensorFlow's GEMMs, "
        "to the same set (`ONEDNN_MAX_CPU_ISA`): a row approximates such a CPU. n/a: "
        "TensorFlow's bfloat16 matmul does not run under an AVX2 or SSE4.1 limit.\n\n"
        + table(results),
    )


if __name__ == "__main__":
    main()
