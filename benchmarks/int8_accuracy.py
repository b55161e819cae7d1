"""What int8 costs in accuracy: each run exported by `cct-fast export RUN --int8` (plain and
fused graph), its test accuracy in ONNX Runtime against the Keras model's; writes the
int8-accuracy block of RESULTS.md.

    python benchmarks/int8_accuracy.py                  # trains the two main jobs first
    python benchmarks/int8_accuracy.py --run runs/A --run runs/B

The main jobs are the README's digits run and the fortunes run of `text_fortunes.py`
(`cct-fast train --model text_cct_2 --dataset fortunes`). Speed is test_deploy.py's.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cct_fast.core.names import is_text_model

from results_file import write_block

MAIN_JOBS = {
    "digits": ["--model", "cct_2_3x2_32", "--dataset", "digits"],
    "fortunes": ["--model", "text_cct_2", "--dataset", "fortunes"],
}
TARGET_DROP = 0.005  # issue 27: at most half a point on digits


def _export(run, out, optimize):
    from cct_fast.export import load_onnx

    command = ["cct-fast", "export", str(run), "-o", str(out), "--int8"]
    subprocess.run(command + (["--optimize"] if optimize else []), check=True)
    return load_onnx(out, providers=["CPUExecutionProvider"]).int8_check


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", type=Path, help="a finished run folder")
    given = parser.parse_args().run
    runs = given
    lines = [
        "### int8 ONNX exports of finished runs, test split\n",
        "| run | graph | Keras | int8 | drop |",
        "|---|---|---:|---:|---:|",
    ]
    drops = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if not runs:
            runs = [folder / name for name in MAIN_JOBS]
            for run, arguments in zip(runs, MAIN_JOBS.values(), strict=True):
                command = ["cct-fast", "train", *arguments, "--out", str(run)]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        for run in runs:
            text = is_text_model(json.loads((run / "recipe.json").read_text())["model"])
            for graph, optimize in (("plain", False), ("fused", True)):
                if optimize and text:
                    continue  # text models export the plain graph only
                check = _export(run, folder / f"{run.name}-{graph}.onnx", optimize)
                drops.append(check.drop)
                lines.append(
                    f"| {run.name} | {graph} | {100 * check.keras_accuracy:.2f} % | "
                    f"{100 * check.int8_accuracy:.2f} % | {100 * check.drop:+.2f} points |"
                )
    lines.append(
        f"\nTarget, a drop of at most {100 * TARGET_DROP:.1f} points: "
        f"{'met' if max(drops) <= TARGET_DROP else 'missed'} (largest "
        f"{100 * max(drops):+.2f})."
    )
    body = "\n".join(lines)
    print(body)
    command = "python benchmarks/int8_accuracy.py" + "".join(f" --run {run}" for run in given or [])
    write_block("int8-accuracy", command, body)


if __name__ == "__main__":
    sys.exit(main())
