"""The README's main job, timed: `cct-fast train --model cct_2_3x2_32 --dataset digits` in a
fresh folder, with its accuracies, its seconds of training (the sum of metrics.csv's epochs,
evaluation included), its wall time and its peak memory; writes its block of RESULTS.md.

    python benchmarks/main_job.py
    python benchmarks/main_job.py --precision mixed_bfloat16   # its own block: bf16 measured

The bfloat16 block compares with the float32 one (the main-job block): bf16 training is
offered where it loses no accuracy here.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_block

COMMAND = ["cct-fast", "train", "--model", "cct_2_3x2_32", "--dataset", "digits"]
TARGET_ACCURACY, TARGET_SECONDS = 0.97, 600


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="float32")
    precision = parser.parse_args().precision
    command = COMMAND + ([] if precision == "float32" else ["--precision", precision])
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        job = subprocess.Popen(
            [*command, "--out", str(Path(folder) / "run")], stdout=subprocess.DEVNULL
        )
        # This child's own usage: RUSAGE_CHILDREN would also hold what processes before an
        # exec into this one left (a shell's earlier commands).
        _, status, usage = os.wait4(job.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{' '.join(command)} failed")
        with open(Path(folder) / "run" / "metrics.csv") as file:
            rows = list(csv.DictReader(file))
    peak = usage.ru_maxrss / 2**20  # kB -> GB
    accuracies = [float(row["test_accuracy"]) for row in rows]
    best = max(range(len(rows)), key=lambda i: accuracies[i])
    training = sum(float(row["seconds"]) for row in rows)
    met = accuracies[-1] >= TARGET_ACCURACY and wall <= TARGET_SECONDS
    body = "\n".join(
        [
            f"### The main job: `{' '.join(command)}`\n",
            "| epochs | final test accuracy | best (epoch) | training | wall | peak RSS |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {len(rows)} | {100 * accuracies[-1]:.1f} % | {100 * accuracies[best]:.1f} % "
            f"({best + 1}) | {training:.0f} s | {wall:.0f} s | {peak:.2f} GB |",
            f"\nTarget, >= {100 * TARGET_ACCURACY:.0f} % within {TARGET_SECONDS // 60} minutes: "
            f"{'met' if met else 'missed'}.",
        ]
    )
    print(body)
    if precision == "float32":
        write_block("main-job", "python benchmarks/main_job.py", body)
    else:
        write_block(
            f"main-job-{precision}",
            f"python benchmarks/main_job.py --precision {precision}",
            body,
        )


if __name__ == "__main__":
    sys.exit(main())
