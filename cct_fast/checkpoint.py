"""Reading PyTorch checkpoints as a name -> numpy array mapping, without running pickled code.

A ``torch.save`` file of PyTorch >= 1.6 is a zip archive: ``data.pkl`` describes the objects and
``data/<key>`` holds each storage's raw bytes. :func:`read_state_dict` unpickles ``data.pkl``
with an unpickler that knows only ordered dicts, storages and tensor rebuilds, so a checkpoint
can be read without torch installed and without executing anything it contains. Files in the
legacy (pre-1.6) format are read with ``torch.load(weights_only=True)`` when torch is installed.
"""

from __future__ import annotations

import collections
import pickle
import re
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class _RefusedObject(pickle.UnpicklingError):
    """The pickle asks for something other than tensors and containers."""


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

# Wrappers the official training scripts and common trainers put around the state dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")


def _rebuild_tensor(storage, offset, size, stride, *_):
    if not size:
        return np.array(storage[offset])
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, *_):
    return data


class _TensorOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedObject(f"it asks for {module}.{name}") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, dtype, key, _location, _numel = pid
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        return self._storages[key]


def _read_zip_checkpoint(path: Path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(
                f"{path} is a zip archive but not a PyTorch checkpoint (no single data.pkl)."
            )
        prefix = pickles[0][: -len("data.pkl")]
        if archive.namelist().count(f"{prefix}byteorder") and (
            archive.read(f"{prefix}byteorder").strip() != b"little"
        ):
            raise CheckpointError(f"{path} was saved big-endian, which is not supported.")
        with archive.open(pickles[0]) as file:
            return _TensorOnlyUnpickler(file, archive, prefix).load()


def _read_legacy_checkpoint(path: Path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path} is not a zip-format PyTorch checkpoint. If it was saved by PyTorch older "
            "than 1.6, install torch (pip install 'cct-fast[torch]') to read it."
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch reports every failure as "Weights only load failed"; a refused object is the
        # one that names the global it would have imported.
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise _RefusedObject(f"it asks for {refused.group(1)}") from None
        raise


def _to_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        import torch

        if value.dtype == torch.bfloat16:
            return value.float().numpy().astype(ml_dtypes.bfloat16)
        return value.detach().cpu().numpy()
    raise TypeError(type(value).__name__)


def unwrap_state_dict(checkpoint, source="checkpoint") -> dict[str, np.ndarray]:
    """Find the state dict (plain, or under ``state_dict``/``model``), drop ``module.`` prefixes
    left by DataParallel, and turn every tensor into a numpy array."""
    for key in _WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{source} holds a {type(checkpoint).__name__}, not a state dict of tensors."
        )
    state_dict = {}
    for name, value in checkpoint.items():
        try:
            array = _to_numpy(value)
        except TypeError as error:
            raise CheckpointError(
                f"{source}: entry {name!r} is a {error}, not a tensor; expected a state dict "
                f"(optionally under one of {_WRAPPER_KEYS})."
            ) from None
        state_dict[name.removeprefix("module.")] = array
    return state_dict


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch checkpoint file, as numpy arrays. Never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    try:
        if zipfile.is_zipfile(path):
            checkpoint = _read_zip_checkpoint(path)
        else:
            checkpoint = _read_legacy_checkpoint(path)
    except CheckpointError:
        raise
    except _RefusedObject as error:
        raise CheckpointError(
            f"Refusing to read {path}: it holds more than tensors ({error}). Loading it would "
            "run code stored in the file; re-save just the state dict (model.state_dict())."
        ) from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, ValueError,
            RuntimeError, OSError) as error:
        raise CheckpointError(
            f"Cannot read {path}: the file is truncated, corrupt or not a PyTorch checkpoint "
            f"({type(error).__name__}: {error})."
        ) from None
    return unwrap_state_dict(checkpoint, source=str(path))
