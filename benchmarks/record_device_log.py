"""Puts what a GPU machine printed into its block of ``benchmarks/RESULTS.md``.

The GPU machines lent to this project have no TensorFlow, so the scripts run there
(``kernels/harness/check_cuda.py``, ``benchmarks/onnx_gpu.py run``) print their figures, and
this script, run here on the saved output, writes them under the usual stamp:

    python benchmarks/record_device_log.py cuda-kernels check_cuda.log \\
        --command "python kernels/harness/check_cuda.py" --machine "NVIDIA H200, CUDA 13"

Markdown headings and tables pass through; every other line is kept verbatim in a text block.
"""

import argparse
from itertools import groupby
from pathlib import Path

from results_file import write_block


def markdown(log):
    """The log as Markdown: its headings and tables as they are, the rest fenced."""
    parts = []
    lines = [line for line in log.strip().splitlines() if line.strip()]
    for is_markdown, group in groupby(lines, key=lambda line: line.startswith(("|", "#"))):
        group = list(group)
        if is_markdown:
            heading = [line for line in group if line.startswith("#")]
            table = [line for line in group if line.startswith("|")]
            parts += heading + (["\n".join(table)] if table else [])
        else:
            parts.append("```text\n" + "\n".join(group) + "\n```")
    return "\n\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("block", help="the block's name in RESULTS.md")
    parser.add_argument("log", type=Path, help="what the GPU machine printed")
    parser.add_argument("--command", required=True, help="the command that printed it")
    parser.add_argument("--machine", required=True, help="the GPU machine, in words")
    args = parser.parse_args()
    write_block(args.block, args.command, markdown(args.log.read_text()), args.machine)


if __name__ == "__main__":
    main()
