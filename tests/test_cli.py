import re
import subprocess
import sys
from pathlib import Path

import pytest

from cct_fast.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def test_models_lists_with_a_pattern(capsys):
    assert cli(["models", "vit_7*"]) == 0
    assert capsys.readouterr().out.split() == ["vit_7_4_32", "vit_7_4_32_sine"]


def test_describe_gives_sizes_parameters_and_both_mac_counts(capsys):
    assert cli(["describe"]) == 0
    out = capsys.readouterr().out
    assert (
        "cct_7_3x1_32: input 32x32x3, 256 tokens; parameters 3,760,139 (3,760,139 trainable, "
        "0 fixed); MACs per image 0.947 G (convolutions and linears, as the official figures "
        "count), 1.182 G with the attention matmuls." in out
    )
    assert (
        "official checkpoint https://shi-labs.com/projects/cct/checkpoints/pretrained/"
        'cct_7_3x1_32_cifar10_300epochs.pth (CIFAR-10, 300 epochs: weights="official"); '
        "official configs cct_7-3x1_cifar10_300epochs, cct_7-3x1_cifar100_300epochs" in out
    )
    assert "head and statistics for cifar10 (10 classes; mean (0.4914, 0.4822, 0.4465)" in out
    summary = out[: out.index("Total params")]
    assert "(None, 256, 256)" in summary and "(None, 10)" in summary and "?" not in summary


def test_describe_a_text_model(capsys):
    assert cli(["describe", "text_cct_2"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("text_cct_2: input 64 words, 33 tokens; parameters ")
    assert f"{34 * 128:,} fixed" in line and "MACs per text 0.016 G" in line


def test_describe_counts_the_sine_table_as_fixed_and_the_class_token(capsys):
    assert cli(["describe", "vit_2_4_32_sine"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert "64 tokens + class token" in line and f"{65 * 128:,} fixed" in line


def _run_python(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )


def test_help_and_models_answer_without_tensorflow():
    """What the command's help and listing import: cct-fast runs with sys.argv[0] == cct-fast."""
    result = _run_python(
        "import sys; sys.argv = ['/usr/bin/cct-fast', 'models', 'cvt_2*']\n"
        "from cct_fast.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['models', 'cvt_2*']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    assert result.stdout.splitlines()[-1] == "False False"
    assert "usage: cct-fast" in result.stdout and "cvt_2_4_32_sine" in result.stdout
    assert result.stderr == ""


def test_train_refuses_bad_runs_recipes_and_data_files_before_tensorflow_starts(tmp_path):
    """Under load, TensorFlow's start-up made an instant refusal take 15-85 s."""
    from cct_fast.train.recipe import make_recipe

    (tmp_path / "recipe.yml").write_text("epochs: -3\n")
    (tmp_path / "one.csv").write_text("text,label\n" + "a b,x\n" * 10)
    (tmp_path / "fine.csv").write_text("text,label\n" + "a b,x\nc d,y\n" * 10)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            (tmp_path / "images" / split / name / "a.png").write_bytes(b"not a png")
    done = tmp_path / "done"  # a run folder, as a run leaves it
    done.mkdir()
    make_recipe(None, model="cct_2_3x2_32", dataset="digits", epochs=3).save(done / "recipe.json")
    (done / "checkpoint.npz").write_bytes(b"")
    before = {path: path.stat().st_mtime_ns for path in done.iterdir()}
    fresh = ["--out", str(tmp_path / "run")]
    cases = [
        [*fresh, "--recipe", str(tmp_path / "recipe.yml")],
        [*fresh, "--model", "text_cct_2", "--dataset", f"csv:{tmp_path / 'one.csv'}"],
        [*fresh, "--model", "text_cct_2", "--dataset", f"csv:{tmp_path / 'missing.csv'}"],
        [*fresh, "--model", "cct_2_3x2_32", "--dataset", f"csv:{tmp_path / 'fine.csv'}"],
        [*fresh, "--model", "cct_2_3x2_32", "--dataset", f"folder:{tmp_path / 'images'}"],
        ["--out", str(done), "--model", "cct_2_3x2_32"],
        ["--resume", "--out", str(tmp_path / "run")],
        ["--resume", "--out", str(done), "--epochs", "5"],
    ]
    result = _run_python(
        "import sys; sys.argv = ['/usr/bin/cct-fast']\n"
        "from cct_fast.cli import main\n"
        f"for argv in {cases!r}:\n"
        "    print(main(['train', *argv]))\n"
        "print('tensorflow' in sys.modules)\n"
    )
    assert result.stdout.split() == ["2"] * len(cases) + ["False"]
    errors = result.stderr.split("cct-fast train: error: ")
    assert errors[0] == ""  # nothing but the package's messages
    expected = [
        "epochs",
        "a classifier needs at least two classes",
        "missing.csv does not exist",
        "image model",
        "4 of the 4 images",
        "already holds a run",
        "Nothing to resume",
        "started with other settings (epochs 3, asked 5)",
    ]
    assert len(errors[1:]) == len(expected), result.stderr
    for line, words in zip(errors[1:], expected, strict=True):
        assert words in line, line
    assert not (tmp_path / "run").exists()
    assert {path: path.stat().st_mtime_ns for path in done.iterdir()} == before


def test_import_cct_fast_registers_the_keras_classes(tmp_path):
    """So that keras.models.load_model finds them in a fresh process."""
    import cct_fast

    cct_fast.create_model("cvt_2_4_32").save(tmp_path / "m.keras")
    path = str(tmp_path / "m.keras")
    result = _run_python(f"import cct_fast, keras; print(type(keras.models.load_model({path!r})))")
    assert result.stdout.strip() == "<class 'cct_fast.core.model.CCT'>"


def test_a_bug_is_a_traceback_not_an_exit_code(monkeypatch):
    """The command catches the project's own errors; any other ValueError is a bug to see."""
    import cct_fast

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(cct_fast, "create_model", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli(["describe"])


def test_unknown_model_is_an_error_not_a_traceback(capsys):
    assert cli(["describe", "cct_99"]) == 2
    assert "Unknown model name 'cct_99'" in capsys.readouterr().err


def test_ci_runs_exactly_the_readme_test_command():
    readme_commands = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    install_and_run, test_command = readme_commands.group(1).strip().splitlines()
    assert "cct-fast" in install_and_run
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print-command"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout.strip() == test_command
    assert test_command.endswith("python -m pytest")


def test_a_pattern_that_matches_nothing_says_so_and_suggests_names(capsys):
    assert cli(["models", "cct_9*"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cct-fast models: no model name matches 'cct_9*'. Close names: ")
    assert "`cct-fast models` lists all 47." in captured.err


def test_the_readme_counts_the_models_there_are():
    import cct_fast

    counts = {
        int(n)
        for n in re.findall(
            r"all (\d+)(?: official)? names|lists all (\d+)\.", (ROOT / "README.md").read_text()
        )
        for n in n
        if n
    }
    assert counts == {len(cct_fast.list_models())}
