"""Atomic writes: a failure part-way, a read-only folder, a full disk, writers killed mid-write."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cct_fast
from cct_fast.base.files import WriteError, atomic_output
from cct_fast.cli import main as cli

from crafted_pth import write_state_dict


@pytest.fixture
def small_filesystem(tmp_path, request):
    """A tmpfs of 256 KiB, or the size the test's ``filesystem_size`` mark gives (root only:
    elsewhere the test is skipped)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small filesystem needs root")
    size = request.node.get_closest_marker("filesystem_size")
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size.args[0] if size else '256k'}",
            "tmpfs",
            str(mount),
        ],
        capture_output=True,
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_failure_after_a_partial_write_keeps_the_old_file_byte_for_byte(tmp_path):
    target = tmp_path / "out.weights.h5"
    target.write_bytes(b"the old weights")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"half of the new")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"the old weights"
    assert _listing(tmp_path) == ["out.weights.h5"]


def _checkpoint(folder):
    return write_state_dict(
        folder / "ckpt.pth",
        cct_fast.weights.official_keys.official_state_dict(cct_fast.create_model("cct_2_3x2_32")),
    )


@pytest.mark.filesystem_size("8m")
def test_a_read_only_folder_gives_one_error_that_names_the_cause(
    small_filesystem, tmp_path, capsys
):
    (small_filesystem / "cct.weights.h5").write_bytes(b"old")
    checkpoint = _checkpoint(tmp_path)
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    model = cct_fast.create_model("cct_2_3x2_32")
    with pytest.raises(
        WriteError,
        match="Cannot write .*cct.weights.h5: Read-only file system; .*cct.weights.h5 is unchanged",
    ):
        cct_fast.save_weights(model, small_filesystem / "cct.weights.h5")
    assert (
        cli(
            [
                "convert",
                str(checkpoint),
                "--model",
                "cct_2_3x2_32",
                "-o",
                str(small_filesystem / "cct.weights.h5"),
            ]
        )
        == 1
    )
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and "Read-only file system" in error
    assert (small_filesystem / "cct.weights.h5").read_bytes() == b"old"


_SAVE_ON_FULL_DISK = """
import sys
import cct_fast
from cct_fast.cli import main
from cct_fast.base.files import atomic_output
target = sys.argv[1]
if sys.argv[2] == "unannounced":  # h5py itself meets the full disk
    try:
        with atomic_output(target) as temporary:
            cct_fast.create_model("cct_2_3x2_32").save_weights(temporary)
    except OSError as error:
        print(error)
        sys.exit(1)
else:
    sys.exit(main(["convert", sys.argv[3], "--model", "cct_2_3x2_32", "-o", target]))
"""


@pytest.mark.parametrize("writer", ["unannounced", "cli"])
def test_a_full_disk_gives_one_error_exit_code_1_and_keeps_the_old_file(
    small_filesystem, tmp_path, writer
):
    target = small_filesystem / "cct.weights.h5"
    target.write_bytes(b"old")
    checkpoint = _checkpoint(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", _SAVE_ON_FULL_DISK, str(target), writer, str(checkpoint)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "Exception ignored" not in output, output[-3000:]
    expected = "No space left on device" if writer == "unannounced" else "not enough space"
    assert f"cct.weights.h5: {expected}" in output
    assert target.read_bytes() == b"old"
    assert _listing(small_filesystem) == ["cct.weights.h5"]


def test_stale_temporary_files_of_killed_writers_are_removed_on_the_next_write(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid now belongs to no running process
    stale = tmp_path / f".out.weights.h5.{finished.pid}-0123abcd.partial.weights.h5"
    alive = tmp_path / f".other.keras.{os.getpid()}-89abcdef.partial.keras"
    for path in (stale, alive):
        path.write_bytes(b"x" * 1000)
    with atomic_output(tmp_path / "new.json") as temporary:
        temporary.write_text("{}")
    assert _listing(tmp_path) == [alive.name, "new.json"]
    np.testing.assert_equal(alive.read_bytes(), b"x" * 1000)


class _Midway(OSError):
    """The failure injected into a writer after it wrote part of its file."""


def _write_part_then_fail(path):
    with open(path, "wb") as file:
        file.write(b"the first half of a new file")
    raise _Midway(5, "injected failure after a partial write")


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _assert_untouched(folder, before):
    """``folder`` holds what it held (name -> bytes), and no temporary file."""
    assert _contents(folder) == before


@pytest.mark.parametrize("name, writer", [("w.weights.h5", "save_weights"), ("m.keras", "save")])
def test_saved_weights_survive_a_writer_failing_midway(tmp_path, monkeypatch, name, writer):
    import keras

    model = cct_fast.create_model("cct_2_3x2_32")
    cct_fast.save_weights(model, tmp_path / name)
    before = _contents(tmp_path)
    monkeypatch.setattr(
        keras.Model, writer, lambda self, path, *a, **k: _write_part_then_fail(path)
    )
    with pytest.raises(
        WriteError, match=f"Cannot write .*{name}: Input/output error; .* is unchanged"
    ):
        cct_fast.save_weights(model, tmp_path / name)
    _assert_untouched(tmp_path, before)


def test_a_run_checkpoint_survives_a_writer_failing_midway(tmp_path, monkeypatch):
    from cct_fast import train
    from cct_fast.train import run_checkpoint
    from cct_fast.train.recipe import make_recipe

    recipe = make_recipe(model="cct_2_3x2_32", dataset="digits")
    model = train.build_model(recipe, 10)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    train.save_checkpoint(tmp_path / "checkpoint.npz", model, recipe, [])
    before = _contents(tmp_path)
    monkeypatch.setattr(
        run_checkpoint.np, "savez", lambda file, **arrays: _write_part_then_fail(file.name)
    )
    with pytest.raises(WriteError, match="checkpoint.npz: Input/output error"):
        train.save_checkpoint(tmp_path / "checkpoint.npz", model, recipe, [{"epoch": 1}])
    _assert_untouched(tmp_path, before)
    assert train.load_checkpoint(tmp_path / "checkpoint.npz", model, recipe) == []


def test_an_onnx_export_survives_a_writer_failing_midway(tmp_path, monkeypatch):
    pytest.importorskip("tf2onnx")
    from cct_fast import export

    (tmp_path / "m.onnx").write_bytes(b"an earlier export")
    monkeypatch.setattr(
        type(tmp_path), "write_bytes", lambda path, data: _write_part_then_fail(path)
    )
    with pytest.raises(WriteError, match="m.onnx: Input/output error; .*m.onnx is unchanged"):
        export.to_onnx(cct_fast.create_model("cct_2_3x2_32"), tmp_path / "m.onnx")
    monkeypatch.undo()
    _assert_untouched(tmp_path, {"m.onnx": b"an earlier export"})


def test_the_cli_keeps_an_earlier_conversion_when_the_new_one_fails_midway(
    tmp_path, monkeypatch, capsys
):
    import keras

    checkpoint = _checkpoint(tmp_path)
    (tmp_path / "out.weights.h5").write_bytes(b"an earlier conversion")
    before = _contents(tmp_path)
    monkeypatch.setattr(
        keras.Model, "save_weights", lambda self, path, *a, **k: _write_part_then_fail(path)
    )
    assert (
        cli(
            [
                "convert",
                str(checkpoint),
                "--model",
                "cct_2_3x2_32",
                "-o",
                str(tmp_path / "out.weights.h5"),
            ]
        )
        == 1
    )
    assert "out.weights.h5: Input/output error" in capsys.readouterr().err
    _assert_untouched(tmp_path, before)


def test_a_converted_official_checkpoint_is_cached_whole_or_not_at_all(tmp_path, monkeypatch):
    import dataclasses

    import keras

    from cct_fast.weights import pretrained

    source = _checkpoint(tmp_path)
    entry = dataclasses.replace(pretrained.OFFICIAL_WEIGHTS["cct_7_3x1_32"], url=source.as_uri())
    monkeypatch.setitem(pretrained.OFFICIAL_WEIGHTS, "cct_2_3x2_32", entry)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache = tmp_path / "keras" / pretrained.CACHE_SUBDIR
    with monkeypatch.context() as failing:
        failing.setattr(
            keras.Model, "save_weights", lambda self, path, *a, **k: _write_part_then_fail(path)
        )
        with pytest.raises(WriteError):
            pretrained.official_weights("cct_2_3x2_32")
    assert _listing(cache) == [entry.filename]  # the download, and no half conversion
    converted = pretrained.official_weights("cct_2_3x2_32")  # converted anew, whole
    model = cct_fast.create_model("cct_2_3x2_32", weights=converted)
    expected = cct_fast.create_model("cct_2_3x2_32", weights=source)
    np.testing.assert_array_equal(model.norm.gamma.numpy(), expected.norm.gamma.numpy())
