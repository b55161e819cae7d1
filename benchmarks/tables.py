"""The results tables of a benchmark run, from its timed groups.

``groups`` maps a group name to ``dict(times={row: [seconds of each round]}, items=images per
call, flops=per image)``; the rows of a group were timed interleaved, so the ratio of two rows
is taken round by round (paired), and its median and range over the rounds are reported.
"""

import statistics


def median_rate(groups, group, row):
    entry = groups[group]
    return entry["items"] / statistics.median(entry["times"][row])


def paired_ratios(groups, group, row, baseline):
    """``row``'s speed over ``baseline``'s in each round (both rows of ``group``)."""
    times = groups[group]["times"]
    return [b / r for r, b in zip(times[row], times[baseline], strict=False)]


def ceiling(groups, precision):
    """The GEMM ceiling of ``precision`` in FLOP/s, None if it was not timed."""
    entry, row = groups.get("ceiling"), f"gemm {precision}"
    if not entry or row not in entry["times"]:
        return None
    return entry["flops"] * median_rate(groups, "ceiling", row)


def group_table(groups, group):
    entry = groups[group]
    rows = list(entry["times"])
    baseline = "reference" if "reference" in rows else rows[0]
    top = ceiling(groups, "bf16" if "bf16" in group else "fp32")
    rounds = len(entry["times"][baseline])
    unit = "sentences/s" if group.startswith("text") else "images/s"
    lines = [
        f"\n### {group}\n",
        f"| implementation | {unit} | over {rounds} rounds | vs {baseline.split(' (')[0]} "
        "| over rounds | of GEMM ceiling |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rate = median_rate(groups, group, row)
        rates = [entry["items"] / t for t in entry["times"][row]]
        ratios = paired_ratios(groups, group, row, baseline)
        share = f"{100 * rate * entry['flops'] / top:.0f} %" if top else "-"
        lines.append(
            f"| {row} | {rate:.1f} | {min(rates):.1f}-{max(rates):.1f} | "
            f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x "
            f"| {share} |"
        )
    return lines


def targets_table(groups, targets):
    lines = ["\n### Targets\n", "| target | measured | |", "|---|---|---|"]
    for target in targets:
        if target.group not in groups or target.baseline_group not in groups:
            lines.append(f"| {target.description} | not in this run | |")
            continue
        if target.group == target.baseline_group:
            ratios = paired_ratios(groups, target.group, target.row, target.baseline_row)
            ratio = statistics.median(ratios)
            measured = f"{ratio:.2f}x (rounds: {min(ratios):.2f}-{max(ratios):.2f}x)"
        else:  # the rows of two groups were not interleaved: medians only
            ratio = median_rate(groups, target.group, target.row) / median_rate(
                groups, target.baseline_group, target.baseline_row
            )
            measured = f"{ratio:.2f}x (medians of two groups)"
        lines.append(
            f"| {target.description} | {measured} | "
            f"{'met' if ratio >= target.at_least else 'missed'} |"
        )
    return lines


def results_table(groups, targets):
    lines = [line for group in groups if group != "ceiling" for line in group_table(groups, group)]
    rates = [(p, ceiling(groups, p)) for p in ("fp32", "bf16") if ceiling(groups, p)]
    if rates:
        lines += [
            "\n### GEMM ceiling (4096x4096 `tf.matmul`, graph mode)\n",
            "| precision | GFLOP/s |",
            "|---|---:|",
        ]
        lines += [f"| {precision} | {rate / 1e9:.0f} |" for precision, rate in rates]
    return "\n".join(lines + targets_table(groups, targets))
