"""Peak memory of CCT-7/3x1 training steps (batch 64), reference against fused, each in a
fresh process so that one's allocations cannot hide the other's; writes its block of
RESULTS.md.

    python benchmarks/peak_memory.py [--steps 3]
"""

import argparse
import subprocess
import sys
import textwrap

from results_file import write_block

_STEPS = textwrap.dedent("""
    import os, resource, sys
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
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def peak_mib(implementation, steps):
    result = subprocess.run([sys.executable, "-c", _STEPS, implementation, str(steps)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    peaks = {implementation: peak_mib(implementation, args.steps)
             for implementation in ("reference", "fused")}
    met = "met" if peaks["fused"] <= peaks["reference"] else "missed"
    body = "\n".join([
        f"### Peak memory, {args.steps} AdamW steps of cct_7_3x1_32 at batch 64, "
        "each implementation in a fresh process\n",
        "| implementation | peak RSS |", "|---|---:|",
        *(f"| {implementation} | {peak:,} MiB |" for implementation, peak in peaks.items()),
        f"\nTarget, the fused train step's peak no higher than the reference's: {met}.",
    ])
    print(body)
    write_block("memory", f"python benchmarks/peak_memory.py --steps {args.steps}", body)


if __name__ == "__main__":
    main()
