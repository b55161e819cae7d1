"""Benchmark plumbing: smoke mode for the default run, and the derived results table.

``pytest benchmarks --benchmark-only`` times every row on the real workloads and writes
``benchmarks/RESULTS.md`` (images/s, ratio to the reference, share of the GEMM ceiling); a run
of selected rows (``-k``, node ids) prints its table and leaves the file alone. Any
other run (the default ``pytest`` in CI) executes each benchmarked function once on tiny
inputs with timing disabled, so the suite cannot rot without costing CI minutes.
"""

import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

RESULTS_FILE = Path(__file__).with_name("RESULTS.md")
_rows = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Runs before pytest-benchmark reads its options.
    config.cct_fast_smoke = not (config.getoption("benchmark_only")
                                 or config.getoption("benchmark_enable"))
    if config.cct_fast_smoke:
        config.option.benchmark_disable = True


@pytest.fixture(scope="session")
def smoke(pytestconfig):
    return pytestconfig.cct_fast_smoke


@pytest.fixture
def record(benchmark, smoke):
    """``record(function, group, row, items, flops_per_item)``: benchmark ``function`` (which
    must block until its result exists) and remember what one call processes."""

    def run(function, group, row, items, flops_per_item):
        benchmark.group = group
        benchmark.name = row
        benchmark.extra_info.update(items=items, flops_per_item=flops_per_item)
        if smoke:
            benchmark(function)
            return
        benchmark.pedantic(function, rounds=5, iterations=1, warmup_rounds=2)
        _rows.append(dict(group=group, row=row, items=items, flops=flops_per_item,
                          seconds=benchmark.stats.stats.median))

    return run


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
        flags = re.search(r"flags\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1).split()
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        cpu = f"{model}, {os.cpu_count()} cores, {'/'.join(isa)}"
    except (OSError, AttributeError):
        pass
    import tensorflow as tf

    return f"{cpu}; Python {platform.python_version()}, TensorFlow {tf.__version__}"


def _table():
    ceilings = {r["row"]: r["flops"] * r["items"] / r["seconds"] for r in _rows
                if r["group"] == "ceiling"}
    lines = []
    for group in dict.fromkeys(r["group"] for r in _rows if r["group"] != "ceiling"):
        rows = [r for r in _rows if r["group"] == group]
        # The reference where the group has one, else its first row (a bare step, say).
        baseline = next((r for r in rows if r["row"] == "reference"), rows[0])
        precision = "bf16" if "bf16" in group else "fp32"
        ceiling = ceilings.get(f"gemm {precision}")
        versus = "vs " + baseline["row"].split(" (")[0]
        lines += [f"\n### {group}\n", f"| implementation | images/s | {versus} | of GEMM ceiling |",
                  "|---|---:|---:|---:|"]
        for r in rows:
            rate = r["items"] / r["seconds"]
            ratio = f"{rate * baseline['seconds'] / baseline['items']:.2f}x"
            share = f"{100 * rate * r['flops'] / ceiling:.0f} %" if ceiling else "-"
            lines.append(f"| {r['row']} | {rate:.1f} | {ratio} | {share} |")
    if ceilings:
        lines += ["\n### GEMM ceiling (4096x4096 `tf.matmul`, graph mode)\n",
                  "| precision | GFLOP/s |", "|---|---:|"]
        lines += [f"| {row} | {value / 1e9:.0f} |" for row, value in ceilings.items()]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, config):
    if config.cct_fast_smoke or not _rows:
        return
    table = _table()
    terminalreporter.write_line(table)
    if config.option.keyword or any("::" in arg for arg in config.args):
        terminalreporter.write_line(f"A selection of rows: {RESULTS_FILE.name} is left as it is.")
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    generated = (
        "<!-- results:start (written by `pytest benchmarks --benchmark-only`) -->\n"
        f"Command: `pytest benchmarks --benchmark-only`  \nDate: "
        f"{datetime.date.today().isoformat()}  \nCommit: {commit or 'unknown'}  \n"
        f"Machine: {_machine()}\n{table}\n<!-- results:end -->"
    )
    text = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else "# Benchmark results\n\n"
    if "<!-- results:start" in text:
        text = re.sub(r"<!-- results:start.*?<!-- results:end -->", lambda _: generated, text,
                      flags=re.S)
    else:
        text += generated + "\n"
    RESULTS_FILE.write_text(text)
