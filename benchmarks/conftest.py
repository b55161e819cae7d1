"""Benchmark plumbing: smoke mode for the default run, interleaved timing, the results table.

``pytest benchmarks --benchmark-only`` times each group's rows interleaved: every round runs
each row once, in an order that reverses from round to round, so that a machine slowing down
or speeding up weighs on all rows alike. Each ratio is then the median over rounds of the
ratio within a round, and its range over rounds says how far to trust it. A complete run
(every row of every group, none failed, skipped or deselected) writes its tables and the
targets into ``benchmarks/RESULTS.md``; so does a complete run of one module, into a block of
its own (``pytest benchmarks/test_deploy.py --benchmark-only`` writes ``deploy``, with the
targets its groups hold); any other run prints them and says why the file is left alone.
The default ``pytest`` (CI) runs each row once on tiny inputs with timing disabled, so the
suite cannot rot without costing CI minutes; test_speed.py leaves out its rows compiled by XLA
or torch.compile there.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from results_file import RESULTS_FILE, write_block  # noqa: E402
from tables import results_table  # noqa: E402
from targets import TARGETS  # noqa: E402

ROUNDS, WARMUPS = 5, 2
_groups = {}  # group -> dict(times={row: [seconds per round]}, items=..., flops=...)
_missing = []  # "group: row (why)" for rows a full run could not time
_deselected = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Runs before pytest-benchmark reads its options.
    config.cct_fast_smoke = not (
        config.getoption("benchmark_only") or config.getoption("benchmark_enable")
    )
    if config.cct_fast_smoke:
        config.option.benchmark_disable = True


def pytest_deselected(items):
    _deselected.extend(items)


@pytest.fixture(scope="session")
def smoke(pytestconfig):
    return pytestconfig.cct_fast_smoke


@pytest.fixture
def time_rows(benchmark, smoke):
    """``time_rows(group, rows, items, flops_per_item, missing={})``: time ``rows`` (name ->
    function that blocks until its result exists), interleaved; ``missing`` names the rows
    this machine cannot run (name -> why)."""

    def run(group, rows, items, flops_per_item, missing=None):
        benchmark.group = benchmark.name = group
        if smoke:
            benchmark(lambda: [function() for function in rows.values()])
            return
        _missing.extend(f"{group}: {row} ({why})" for row, why in (missing or {}).items())
        for _ in range(WARMUPS):
            for function in rows.values():
                function()
        times, order = {row: [] for row in rows}, list(rows)

        def one_round():
            for row in order:
                started = time.perf_counter()
                rows[row]()
                times[row].append(time.perf_counter() - started)
            order.reverse()

        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
        _groups[group] = dict(times=times, items=items, flops=flops_per_item)

    return run


def _one_module(config):
    """The block a run of one benchmark module writes (``test_deploy.py``: ``deploy``), or
    None for a run of the whole folder."""
    from pathlib import Path

    paths = [Path(arg) for arg in config.args]
    if len(paths) == 1 and paths[0].suffix == ".py":
        return paths[0].stem.removeprefix("test_")
    return None


def _why_incomplete(terminalreporter, config):
    reasons = []
    if config.option.keyword or any("::" in arg for arg in config.args):
        reasons.append("a selection of rows (-k or node ids)")
    if _deselected:
        reasons.append(f"{len(_deselected)} benchmark(s) deselected")
    for outcome in ("failed", "error", "skipped"):
        reports = [
            r
            for r in terminalreporter.stats.get(outcome, [])
            if "--benchmark-only" not in str(r.longrepr)
        ]  # not a benchmark at all
        if reports:
            reasons.append(f"{len(reports)} {outcome}")
    if _missing:
        reasons.append("rows this machine cannot run: " + "; ".join(_missing))
    return reasons


def pytest_terminal_summary(terminalreporter, config):
    if config.cct_fast_smoke or not _groups:
        return
    module = _one_module(config)
    targets = [t for t in TARGETS if t.group in _groups] if module else TARGETS
    table = results_table(_groups, targets)
    terminalreporter.write_line(table)
    reasons = _why_incomplete(terminalreporter, config)
    if reasons:
        terminalreporter.write_line(
            f"Not a complete run ({', '.join(reasons)}): {RESULTS_FILE.name} is left as it is."
        )
        return
    if module:
        write_block(module, f"pytest {config.args[0]} --benchmark-only", table)
    else:
        write_block("results", "pytest benchmarks --benchmark-only", table)
