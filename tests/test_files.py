"""Atomic writes: a failure part-way, a read-only folder, a full disk, writers killed mid-write."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cct_fast
from cct_fast.cli import main as cli
from cct_fast.files import WriteError, atomic_output
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
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size.args[0] if size else '256k'}",
                       "tmpfs", str(mount)], capture_output=True).returncode:
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
    return write_state_dict(folder / "ckpt.pth", cct_fast.convert.official_state_dict(
        cct_fast.create_model("cct_2_3x2_32")))


@pytest.mark.filesystem_size("8m")
def test_a_read_only_folder_gives_one_error_that_names_the_cause(small_filesystem, tmp_path,
                                                                 capsys):
    (small_filesystem / "cct.weights.h5").write_bytes(b"old")
    checkpoint = _checkpoint(tmp_path)
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    model = cct_fast.create_model("cct_2_3x2_32")
    with pytest.raises(WriteError, match="Cannot write .*cct.weights.h5: Read-only file system; "
                                         ".*cct.weights.h5 is unchanged"):
        cct_fast.save_weights(model, small_filesystem / "cct.weights.h5")
    assert cli(["convert", str(checkpoint), "--model", "cct_2_3x2_32",
                "-o", str(small_filesystem / "cct.weights.h5")]) == 1
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and "Read-only file system" in error
    assert (small_filesystem / "cct.weights.h5").read_bytes() == b"old"


_SAVE_ON_FULL_DISK = """
import sys
import cct_fast
from cct_fast.cli import main
from cct_fast.files import atomic_output
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
def test_a_full_disk_gives_one_error_exit_code_1_and_keeps_the_old_file(small_filesystem,
                                                                       tmp_path, writer):
    target = small_filesystem / "cct.weights.h5"
    target.write_bytes(b"old")
    checkpoint = _checkpoint(tmp_path)
    result = subprocess.run([sys.executable, "-c", _SAVE_ON_FULL_DISK, str(target), writer,
                             str(checkpoint)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
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
