"""Where a training step's time goes, op by op, from TensorFlow's profiler.

    python benchmarks/profile_step.py [--model cct_7_3x1_32] [--batch 64]
        [--policy mixed_bfloat16 float32] [--implementation custom]

Keras' ``train_on_batch`` with AdamW at the official dropout defaults (the train-step group's
workload), traced for a few steps after warm-up. TensorFlow runs independent ops side by side
on its inter-op threads, each of them on the shared intra-op pool, so their durations overlap
and their sum says little; this script allows one inter-op thread, so that the ops run one
after another and each op's time is its own (the step runs a few percent slower than with the
default threads). The rows sum each op type's time per step and group the model's ops: GEMMs
forward and backward, the custom ops, the optimizer's update, and the rest. Writes the block
profile-step-<model> of RESULTS.md.
"""

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

import cct_fast  # noqa: E402

from results_file import write_block  # noqa: E402
from workloads import random_batch  # noqa: E402

WARMUP_STEPS, TRACED_STEPS, SHOWN_OPS = 3, 4, 14
GEMM_TYPES = ("_MklMatMul", "_MklNativeFusedMatMul", "BatchMatMulV2", "_MklBatchMatMulV2")


def op_milliseconds(model, images, labels, steps):
    """{(op type, name scope): milliseconds per step} over ``steps`` traced steps."""
    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        for _ in range(steps):
            model.train_on_batch(images, labels)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(folder).rglob("*.xplane.pb")).read_bytes())
    times = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads: one op each
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:  # thread-pool and executor bookkeeping
                    continue
                scope, op_type = name.rsplit(":", 1)
                times[op_type, scope] += event.duration_ps / 1e9 / steps
    return times


def group_of(op_type, scope, model_name):
    """The row an op counts in: the model's ops (forward, or under the gradient tape) by kind;
    outside the model, the loss and the AdamW update (Keras names most of its ops at the top
    level)."""
    backward = scope.startswith("gradient_tape/")
    if not backward and not scope.startswith(model_name):
        return "outside the model: loss and AdamW update"
    if op_type in GEMM_TYPES:
        return "GEMMs, backward" if backward else "GEMMs, forward"
    if op_type.startswith("Cct"):
        return "custom ops (attention, norms, GELU, drop path, pooling)"
    return "other ops of the model (convolution, adds, casts)"


def profile(name, batch, policy, implementation):
    model = cct_fast.create_model(name, implementation=implementation, dtype=policy)
    images, labels = random_batch(model.config, batch)
    images = tf.constant(images)
    model.compile(
        optimizer=keras.optimizers.AdamW(5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    for _ in range(WARMUP_STEPS):
        model.train_on_batch(images, labels)
    times = op_milliseconds(model, images, labels, TRACED_STEPS)
    total = sum(times.values())
    by_type, by_group = collections.Counter(), collections.Counter()
    for (op_type, scope), ms in times.items():
        by_type[op_type] += ms
        by_group[group_of(op_type, scope, model.name)] += ms
    lines = [f"{name}, batch {batch}, {policy}, implementation={implementation!r}"]
    lines.append(f"  all ops, one after another          {total:8.1f} ms a step")
    for group, ms in by_group.most_common():
        lines.append(f"  {group:54s} {ms:8.1f} ms  {ms / total:4.0%}")
    lines.append("  largest op types:")
    for op_type, ms in by_type.most_common(SHOWN_OPS):
        lines.append(f"    {op_type:34s} {ms:8.1f} ms  {ms / total:4.0%}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cct_7_3x1_32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--policy", nargs="+", default=["mixed_bfloat16", "float32"])
    parser.add_argument("--implementation", default="custom")
    args = parser.parse_args()
    tf.config.threading.set_inter_op_parallelism_threads(1)  # before TensorFlow starts
    lines = []
    for policy in args.policy:
        lines += [*profile(args.model, args.batch, policy, args.implementation), ""]
        print("\n".join(lines), flush=True)
    command = " ".join(["python benchmarks/profile_step.py", *sys.argv[1:]])
    write_block(
        f"profile-step-{args.model}",
        command,
        f"### One training step of {args.model}, op by op (one inter-op thread)\n\n```\n"
        + "\n".join(lines).rstrip()
        + "\n```",
    )


if __name__ == "__main__":
    main()
