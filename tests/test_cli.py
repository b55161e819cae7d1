import re
from pathlib import Path

from cct_fast.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def test_models_lists_with_a_pattern(capsys):
    assert cli(["models", "vit_7*"]) == 0
    assert capsys.readouterr().out.split() == ["vit_7_4_32", "vit_7_4_32_sine"]


def test_describe_runs_the_default_model(capsys):
    assert cli(["describe"]) == 0
    out = capsys.readouterr().out
    assert "cct_7_3x1_32: 256 tokens, 3,760,139 parameters; logits of a random batch: (2, 10)" in out


def test_unknown_model_is_an_error_not_a_traceback(capsys):
    assert cli(["describe", "cct_99"]) == 2
    assert "Unknown model name 'cct_99'" in capsys.readouterr().err


def test_ci_runs_exactly_the_readme_test_command():
    readme_commands = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    install_and_run, test_command = readme_commands.group(1).strip().splitlines()
    assert "cct-fast" in install_and_run
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == test_command


def test_a_pattern_that_matches_nothing_says_so_and_suggests_names(capsys):
    assert cli(["models", "cct_9*"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cct-fast models: no model name matches 'cct_9*'. Close names: ")
    assert "`cct-fast models` lists all 35." in captured.err


def test_the_readme_counts_the_models_there_are():
    import cct_fast

    counts = {int(n) for n in re.findall(r"all (\d+)(?: official)? names|lists all (\d+)\.",
                                         (ROOT / "README.md").read_text()) for n in n if n}
    assert counts == {len(cct_fast.list_models())}
