"""The generated blocks of ``benchmarks/RESULTS.md``: each script that measures something
writes its own block, stamped with its command, the date, the commit (and whether the working
tree had changes), and the machine. Nothing in the file's figures is written by hand."""

import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

RESULTS_FILE = Path(__file__).with_name("RESULTS.md")
ROOT = Path(__file__).resolve().parents[1]


def _git(*args):
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
    return result.stdout.strip() if result.returncode == 0 else ""


def commit_stamp():
    """The short commit, and a word about uncommitted changes (RESULTS.md itself aside)."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [
        line
        for line in _git("status", "--porcelain").splitlines()
        if not line.endswith(RESULTS_FILE.name)
    ]
    return commit + (f" (modified: {len(changed)} uncommitted change(s))" if changed else "")


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", info).group(1)
        flags = re.search(r"flags\s*:\s*(.*)", info).group(1).split()
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        cpu = f"{model}, {os.cpu_count()} cores, {'/'.join(isa)}"
    except (OSError, AttributeError):
        pass
    import tensorflow as tf

    return f"{cpu}; Python {platform.python_version()}, TensorFlow {tf.__version__}"


def write_block(name, command, body, machine_description=None):
    """Replace the block ``name`` of RESULTS.md (or append it) with ``body`` under a stamp;
    ``machine_description`` names the machine that measured, where it is not this one."""
    block = (
        f"<!-- {name}:start (written by `{command}`) -->\n"
        f"Command: `{command}`  \nDate: {datetime.date.today().isoformat()}  \n"
        f"Commit: {commit_stamp()}  \nMachine: {machine_description or machine()}\n\n"
        f"{body.strip()}\n"
        f"<!-- {name}:end -->"
    )
    text = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"<!-- {name}:start.*?<!-- {name}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS_FILE.write_text(text)
