"""The tensor-only reader of PyTorch checkpoint files."""

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from cct_fast.weights.pth import CheckpointError, read_state_dict

torch = pytest.importorskip("torch")


def test_reads_tensors_views_and_dtypes_like_torch(tmp_path):
    state = {
        "weight": torch.randn(4, 3),
        "transposed": torch.randn(5, 4).t(),  # non-contiguous strides
        "slice": torch.randn(10)[3:7],  # storage offset
        "half": torch.randn(3).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "steps": torch.tensor(7),  # 0-d
        "param": torch.nn.Parameter(torch.randn(2)),
    }
    torch.save(state, tmp_path / "a.pth")
    loaded = read_state_dict(tmp_path / "a.pth")
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        np.testing.assert_array_equal(
            loaded[key].astype(np.float32), tensor.detach().float().numpy(), err_msg=key
        )
    assert loaded["bf16"].dtype == ml_dtypes.bfloat16
    assert loaded["half"].dtype == np.float16


@pytest.mark.parametrize("wrapper", ["state_dict", "model", None])
def test_unwraps_trainer_checkpoints_and_dataparallel_prefixes(tmp_path, wrapper):
    state = {"module.fc.weight": torch.ones(2, 2)}
    checkpoint = {wrapper: state, "epoch": 3, "optimizer": {"lr": 0.1}} if wrapper else state
    torch.save(checkpoint, tmp_path / "c.pth")
    assert list(read_state_dict(tmp_path / "c.pth")) == ["fc.weight"]


def test_legacy_format_is_read_through_torch_weights_only(tmp_path):
    torch.save({"w": torch.arange(3.0)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(read_state_dict(tmp_path / "old.pth")["w"], [0, 1, 2])


class _Payload:
    """Pickles to a call of ``os.system``: what a malicious checkpoint would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickled_code_is_never_run(tmp_path, zip_format):
    marker = tmp_path / "ran"
    torch.save(
        {"w": torch.ones(1), "x": _Payload(marker)},
        tmp_path / "evil.pth",
        _use_new_zipfile_serialization=zip_format,
    )
    with pytest.raises(CheckpointError, match="Refusing to read .*holds more than tensors"):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_a_whole_pickled_module_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="asks for torch.nn.modules.linear.Linear"):
        read_state_dict(tmp_path / "module.pth")


def test_truncated_file(tmp_path):
    torch.save({"w": torch.randn(1000)}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="begins as a zip archive.*truncated or corrupt"):
        read_state_dict(tmp_path / "cut.pth")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all \x00\x01"])
def test_garbage_file(tmp_path, content):
    (tmp_path / "junk.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match="Cannot read .*junk.pth"):
        read_state_dict(tmp_path / "junk.pth")


def test_non_tensor_entry(tmp_path):
    torch.save({"w": torch.ones(1), "note": "hello"}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="entry 'note' is a str, not a tensor"):
        read_state_dict(tmp_path / "mixed.pth")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint file"):
        read_state_dict(tmp_path / "nope.pth")


def test_importing_cct_fast_does_not_import_torch():
    code = "import sys, cct_fast; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize(
    "make, dtype, zip_format",
    [
        (lambda: torch.randn(3).to(torch.float8_e4m3fn), "float8_e4m3fn", True),
        (lambda: torch.randn(2, dtype=torch.complex64), "ComplexFloatStorage", True),
        (lambda: torch.randn(2, dtype=torch.complex64), "complex64", False),
    ],
    ids=["float8", "complex", "complex-legacy"],
)
def test_complex_and_float8_tensors_written_by_torch_are_unsupported(
    tmp_path, make, dtype, zip_format
):
    torch.save({"w": make()}, tmp_path / "t.pth", _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=f"it holds .*({dtype}), which is unsupported"):
        read_state_dict(tmp_path / "t.pth")


def test_a_damaged_legacy_file_gets_no_unsafe_advice(tmp_path):
    torch.save({"w": torch.randn(100)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    data = bytearray((tmp_path / "old.pth").read_bytes())
    data[40:80] = bytes(range(40))  # garbage after the magic number
    (tmp_path / "old.pth").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="Cannot read .*old.pth") as caught:
        read_state_dict(tmp_path / "old.pth")
    assert "weights_only" not in str(caught.value) and "arbitrary code" not in str(caught.value)
