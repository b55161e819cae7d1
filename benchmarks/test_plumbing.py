"""The benchmark plumbing itself: paired ratios, tables, targets and the RESULTS.md blocks."""

import profile_step

import record_device_log
import results_file
import tables
from targets import Target

# Two rounds of three interleaved rows; the machine slowed down by 2x in the second round.
GROUPS = {
    "inference": dict(
        times={"reference": [1.0, 2.0], "fused": [0.5, 1.0], "slow": [2.0, 2.0]},
        items=10,
        flops=1e9,
    ),
    "other": dict(times={"reference": [4.0, 4.0]}, items=10, flops=1e9),
    "ceiling": dict(times={"gemm fp32": [1.0, 1.0]}, items=1, flops=40e9),
}


def test_ratios_are_paired_round_by_round():
    assert tables.paired_ratios(GROUPS, "inference", "fused", "reference") == [2.0, 2.0]
    assert tables.paired_ratios(GROUPS, "inference", "slow", "reference") == [0.5, 1.0]


def test_a_group_table_gives_medians_ranges_and_the_ceiling_share():
    lines = tables.group_table(GROUPS, "inference")
    assert lines[1].startswith("| implementation | images/s | over 2 rounds | vs reference |")
    assert "| fused | 13.3 | 10.0-20.0 | 2.00x | 2.00-2.00x | 33 % |" in lines
    assert "| slow | 5.0 | 5.0-5.0 | 0.75x | 0.50-1.00x | 12 % |" in lines


def test_targets_are_met_or_missed_from_the_ratios():
    targets = [
        Target("fused 2x", "inference", "fused", "inference", "reference", 2.0),
        Target("slow 1x", "inference", "slow", "inference", "reference", 1.0),
        Target("across", "inference", "fused", "other", "reference", 5.0),
        Target("absent", "missing", "fused", "missing", "reference", 1.0),
    ]
    lines = tables.targets_table(GROUPS, targets)
    assert "| fused 2x | 2.00x (rounds: 2.00-2.00x) | met |" in lines
    assert "| slow 1x | 0.75x (rounds: 0.50-1.00x) | missed |" in lines
    assert "| across | 5.33x (medians of two groups) | met |" in lines
    assert "| absent | not in this run | |" in lines


def test_a_block_replaces_only_itself_and_marks_uncommitted_changes(tmp_path, monkeypatch):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n<!-- one:start -->\nold\n<!-- one:end -->\n\nprose\n")
    monkeypatch.setattr(results_file, "RESULTS_FILE", path)
    monkeypatch.setattr(results_file, "commit_stamp", lambda: "abc1234 (modified: 2 ...)")
    results_file.write_block("one", "python first.py", "new figures")
    results_file.write_block("two", "python second.py", "more figures")
    text = path.read_text()
    assert "old" not in text and text.count("new figures") == 1 and "prose" in text
    assert "Command: `python first.py`" in text and "Commit: abc1234 (modified: 2 ...)" in text
    assert text.index("prose") < text.index("<!-- two:start")


def test_the_commit_stamp_names_uncommitted_changes(tmp_path, monkeypatch):
    def git(*args):
        return {
            ("rev-parse", "--short", "HEAD"): "abc1234",
            ("status", "--porcelain"): " M cct_fast/model.py\n M benchmarks/RESULTS.md",
        }[args]

    monkeypatch.setattr(results_file, "_git", git)
    assert results_file.commit_stamp() == "abc1234 (modified: 1 uncommitted change(s))"


def test_a_device_log_keeps_its_tables_and_fences_the_rest(tmp_path, monkeypatch):
    log = "device: H200\nrelative error 4e-07\n\n### timings\n\n"
    log += "| a | b |\n| --- | --- |\n| 1 | 2 |\nFAILED\n"
    assert record_device_log.markdown(log) == (
        "```text\ndevice: H200\nrelative error 4e-07\n```\n\n### timings\n\n"
        "| a | b |\n| --- | --- |\n| 1 | 2 |\n\n```text\nFAILED\n```"
    )
    path = tmp_path / "RESULTS.md"
    monkeypatch.setattr(results_file, "RESULTS_FILE", path)
    monkeypatch.setattr(results_file, "commit_stamp", lambda: "abc1234")
    results_file.write_block("gpu", "python on_gpu.py", "figures", "NVIDIA H200")
    assert "Machine: NVIDIA H200\n\nfigures" in path.read_text()


def test_a_profiled_op_counts_in_its_row():
    model = "cct_7_3x1_32_1"
    rows = {
        ("_MklMatMul", f"{model}/block_0_1/MatMul"): "GEMMs, forward",
        ("_MklMatMul", f"gradient_tape/{model}/block_0_1/MatMul"): "GEMMs, backward",
        ("CctAttentionGrad", f"gradient_tape/{model}/block_0_1/self_attn_1"): "custom ops",
        ("_MklNativeConv2D", f"{model}/tokenizer_1/conv_0_1/convolution"): "other ops",
        ("RealDiv", "truediv_77"): "outside the model",
        ("AssignSubVariableOp", "adam_w/AssignSubVariableOp_3"): "outside the model",
    }
    for (op_type, scope), row in rows.items():
        assert profile_step.group_of(op_type, scope, model).startswith(row), (op_type, scope)
