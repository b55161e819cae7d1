"""Peak memory of CCT-7/3x1 training steps (batch 64): reference, fused and (where the
library is built) the custom ops, each in fresh processes so that one's allocations cannot
hide another's; writes its block of RESULTS.md.

    python benchmarks/peak_memory.py [--steps 3] [--repeats 2]
"""

import argparse
import os
import subprocess
import sys
import textwrap

from cct_fast.compute import custom_ops

from results_file import write_block

_STEPS = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras, numpy as np, cct_fast
    implementation, steps = sys.argv[1], int(sys.argv[2])
    model = cct_fast.create_model("cct_7_3x1_32", implementation=implementation)
    model.compile(optimizer=keras.optimizers.AdamW(5e-4, weight_decay=0.06),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((64, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, 64)
    for _ in range(steps):
        model.train_on_batch(images, labels)
""")


def peak_mib(implementation, steps):
    """The peak resident memory of a fresh process running the steps, from the kernel's
    accounting of that one child."""
    child = subprocess.Popen(
        [sys.executable, "-c", _STEPS, implementation, str(steps)], stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"the {implementation} steps failed")
    return usage.ru_maxrss // 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    built = custom_ops.ops() is not None
    implementations = ["reference", "fused"] + (["custom"] if built else [])
    peaks = {
        implementation: [peak_mib(implementation, args.steps) for _ in range(args.repeats)]
        for implementation in implementations
    }
    # Fresh processes of the same code differ by a few tens of MiB: one implementation is
    # higher than another only if all its runs are above all the other's.
    targets = [
        (f"the {lower} train step's peak no higher than the {higher}'s", lower, higher)
        for lower, higher in (("fused", "reference"), ("custom", "fused"))
        if lower in peaks
    ]
    verdicts = [
        f"Target, {text}: {'met' if min(peaks[lower]) <= max(peaks[higher]) else 'missed'}."
        for text, lower, higher in targets
    ]
    body = "\n".join(
        [
            f"### Peak memory, {args.steps} AdamW steps of cct_7_3x1_32 at batch 64, "
            f"{args.repeats} fresh processes per implementation\n",
            "| implementation | peak RSS of each process |",
            "|---|---:|",
            *(
                f"| {implementation} | {', '.join(f'{p:,}' for p in runs)} MiB |"
                for implementation, runs in peaks.items()
            ),
            "",
            *verdicts,
        ]
    )
    print(body)
    write_block(
        "memory",
        f"python benchmarks/peak_memory.py --steps {args.steps} --repeats {args.repeats}",
        body,
    )


if __name__ == "__main__":
    main()
