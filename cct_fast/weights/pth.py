"""Reading PyTorch checkpoints as a name -> numpy array mapping, without running pickled code.

A ``torch.save`` file of PyTorch >= 1.6 is a zip archive: ``data.pkl`` describes the objects and
``data/<key>`` holds each storage's raw bytes. :func:`read_state_dict` unpickles ``data.pkl``
with an unpickler that knows only ordered dicts, storages and tensor rebuilds, so a checkpoint
can be read without torch installed and without executing anything it contains. Files in the
legacy (pre-1.6) format are read with ``torch.load(weights_only=True)`` when torch is installed.

A checkpoint may come from anyone, so what a file can make the reader do is bounded:

- every storage entry must hold exactly the bytes its dtype and element count say, and is
  decompressed no further than that;
- every tensor view (offset, sizes, strides, negative ones included) must lie inside its
  storage, checked before the view is built;
- the bytes the reader allocates for one file (the pickle, the storages, the tensors) may not
  exceed :data:`MAX_BYTES`.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np

from cct_fast.base.optional import require
from cct_fast.errors import CheckpointError

# What one checkpoint may make the reader allocate: 4 GiB. The largest official checkpoint
# (cct_14_7x2_384, 22.5 M parameters) needs 180 MB with its tensors copied out of their
# storages; a model 20 times larger still fits, a few hundred crafted bytes that ask for more
# are refused before anything is allocated. Raise it for a larger model you trust.
MAX_BYTES = 4 * 2**30


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something other than tensors and containers."""


class _Unsupported(pickle.UnpicklingError):
    """A well-formed checkpoint entry that cct_fast has no use for (a complex tensor, say)."""


class _Malformed(pickle.UnpicklingError):
    """A checkpoint whose parts contradict each other."""


class _TooLarge(pickle.UnpicklingError):
    """A checkpoint that asks for more memory than :data:`MAX_BYTES`."""


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

# The first object of a legacy torch.save file.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _TorchName:
    """What a ``torch.<name>`` global (a storage class or a dtype) stands for in the pickle: an
    inert marker, so the pickle cannot call it."""

    def __init__(self, name, dtype=None):
        self.name, self.dtype = name, None if dtype is None else np.dtype(dtype)


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


@dataclasses.dataclass(frozen=True)
class DeclaredTensor:
    """A checkpoint tensor's shape and dtype as its pickle declares them, its data unread."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value):
    return _is_int(value) and value >= 0


def _is_shape(values):
    return isinstance(values, (tuple, list)) and all(_is_count(v) for v in values)


def _size(nbytes):
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


class _Budget:
    """The bytes one file has made the reader allocate so far."""

    def __init__(self, limit):
        self.limit, self.used = limit, 0

    def charge(self, nbytes, what):
        self.used += nbytes
        if self.used > self.limit:
            raise _TooLarge(
                f"{what} would bring the memory it takes to {_size(self.used)}, over the "
                f"limit of {_size(self.limit)} (cct_fast.weights.pth.MAX_BYTES)"
            )


class _TensorOnlyUnpickler(pickle.Unpickler):
    """``declared_only``: check every storage and view as when reading, and give each tensor as
    a :class:`DeclaredTensor`, no storage decompressed."""

    def __init__(self, file, archive, prefix: str, budget: _Budget, declared_only=False):
        super().__init__(file)
        self._archive, self._prefix, self._budget = archive, prefix, budget
        self._declared_only = declared_only
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3"):
            return self._rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _TorchName(name, _STORAGE_DTYPES[name])
        if module == "torch" and re.fullmatch(
            r"\w*(Storage|int\d+|float\w*|complex\d+|half|bool)", name
        ):
            return _TorchName(name)  # a storage class or dtype that is read but not supported
        if (module, name) == ("torch.storage", "UntypedStorage"):
            return _TorchName(name, np.uint8)
        raise _Refused(f"it asks for {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Malformed(f"unknown persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not (isinstance(storage_type, _TorchName) and isinstance(key, str) and _is_count(numel)):
            raise _Malformed(f"malformed storage reference {pid!r:.80}")
        if storage_type.dtype is None:
            raise _Unsupported(f"tensors of type torch.{storage_type.name}")
        dtype = storage_type.dtype.newbyteorder("<")
        if key in self._storages:
            storage = self._storages[key]
            if storage.array.dtype != dtype or len(storage.array) != numel:
                raise _Malformed(f"storage {key} is referenced with two different types")
            return storage
        name = f"{self._prefix}data/{key}"
        try:
            entry = self._archive.getinfo(name)
        except KeyError:
            raise _Malformed(f"storage {key} is missing from the archive") from None
        expected = numel * dtype.itemsize
        if entry.file_size != expected:
            raise _Malformed(
                f"storage {key} holds {entry.file_size} bytes where {numel} elements of "
                f"{storage_type.name} take {expected}"
            )
        self._budget.charge(expected, f"storage {key} ({numel:,} elements)")
        if self._declared_only:  # numel elements that take no memory: the views' bounds hold
            empty = np.zeros(1, dtype)
            virtual = np.lib.stride_tricks.as_strided(empty, (numel,), (0,), writeable=False)
            self._storages[key] = _Storage(key, virtual)
            return self._storages[key]
        with self._archive.open(entry) as file:
            raw = file.read(expected)  # a deflated entry is decompressed no further
        if len(raw) != expected:
            raise _Malformed(f"storage {key} is truncated")
        self._storages[key] = _Storage(key, np.frombuffer(raw, dtype=dtype))
        return self._storages[key]

    def _rebuild_tensor(self, storage, offset, size, stride, *rest):
        """``torch._utils._rebuild_tensor_v2`` (and ``_v3``, whose extra argument is the
        dtype of a storage that has no typed class: never one cct_fast supports)."""
        if len(rest) >= 3 and isinstance(rest[2], _TorchName):
            raise _Unsupported(f"a tensor of dtype torch.{rest[2].name}")
        if not isinstance(storage, _Storage):
            raise _Malformed("a tensor is rebuilt from something that is not a storage")
        if not (
            _is_count(offset)
            and _is_shape(size)
            and isinstance(stride, (tuple, list))
            and len(stride) == len(size)
            and all(_is_int(s) for s in stride)
        ):
            raise _Malformed(
                f"a tensor has a malformed offset, size or stride "
                f"({offset!r:.40}, {size!r:.80}, {stride!r:.80})"
            )
        array = storage.array
        elements = math.prod(size)
        self._budget.charge(
            elements * array.itemsize, f"a tensor of shape {tuple(size)} ({elements:,} elements)"
        )
        # The lowest and highest element the view reaches, checked before it is built.
        lowest = offset + sum(s * (n - 1) for s, n in zip(stride, size, strict=False) if s < 0)
        highest = offset + sum(s * (n - 1) for s, n in zip(stride, size, strict=False) if s > 0)
        if elements and (lowest < 0 or highest >= len(array)) or offset > len(array):
            raise _Malformed(
                f"a tensor of shape {tuple(size)}, stride {tuple(stride)} and offset {offset} "
                f"reaches elements {lowest}..{highest} of storage {storage.key}, which holds "
                f"{len(array)}"
            )
        if self._declared_only:
            return DeclaredTensor(tuple(size), array.dtype)
        base = array[offset:] if elements else array[:0]
        view = np.lib.stride_tricks.as_strided(
            base,
            shape=tuple(size),
            strides=tuple(s * array.itemsize for s in stride),
            writeable=False,
        )
        return np.array(view)


def _rebuild_parameter(data, *_):
    if not isinstance(data, np.ndarray):
        raise _Malformed("a parameter wraps something that is not a tensor")
    return data


def _read_zip_checkpoint(path: Path, budget: _Budget, declared_only=False):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(
                f"{path} is a zip archive but not a PyTorch checkpoint (no single data.pkl)."
            )
        prefix = pickles[0][: -len("data.pkl")]
        if archive.namelist().count(f"{prefix}byteorder") and (
            archive.read(f"{prefix}byteorder")[:16].strip() != b"little"
        ):
            raise CheckpointError(f"{path} was saved big-endian, which is not supported.")
        description = archive.getinfo(pickles[0])
        budget.charge(description.file_size, "its data.pkl")
        with archive.open(description) as file:
            pickled = file.read(description.file_size)
        unpickler = _TensorOnlyUnpickler(
            io.BytesIO(pickled), archive, prefix, budget, declared_only
        )
        return unpickler.load()


class _NothingAllowed(pickle.Unpickler):
    def find_class(self, module, name):
        raise _Refused(f"it asks for {module}.{name}")


def _first_bytes(path: Path, count=64) -> bytes:
    with open(path, "rb") as file:
        return file.read(count)


def _is_legacy_checkpoint(head: bytes) -> bool:
    """Whether a file starting with ``head`` is in the format of ``torch.save`` before 1.6."""
    try:
        return _NothingAllowed(io.BytesIO(head)).load() == _LEGACY_MAGIC
    except Exception:  # noqa: BLE001 (any malformed start means "not a legacy checkpoint")
        return False


def _read_legacy_checkpoint(path: Path):
    torch = require(
        "torch",
        f"{path} is a PyTorch checkpoint in the format of PyTorch older than 1.6; reading it",
        "'cct-fast[torch]'",
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch reports every failure as "Weights only load failed", with advice to load the
        # file unsafely; keep only what it found. A refused object names its global.
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise _Refused(f"it asks for {refused.group(1)}") from None
        found = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))
        raise _Malformed(
            found.group(1).strip() if found else "torch could not unpickle it"
        ) from None


def _to_numpy(value, budget: _Budget):
    if isinstance(value, (np.ndarray, DeclaredTensor)):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "numel"):
        import torch

        supported = (
            torch.float64,
            torch.float32,
            torch.float16,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint8,
            torch.bool,
        )
        budget.charge(
            value.numel() * value.element_size(), f"a tensor of shape {tuple(value.shape)}"
        )
        if value.dtype == torch.bfloat16:
            return value.float().numpy().astype(ml_dtypes.bfloat16)
        if value.dtype not in supported:
            raise _Unsupported(f"a tensor of dtype {value.dtype}")
        return np.array(value.detach().cpu().numpy())
    raise TypeError(type(value).__name__)


def unwrap_state_dict(checkpoint, source="checkpoint", budget=None) -> dict[str, np.ndarray]:
    """Find the state dict (plain, or under ``state_dict``/``model``), drop ``module.`` prefixes
    left by DataParallel, and turn every tensor into a numpy array."""
    budget = budget or _Budget(MAX_BYTES)
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
        if not isinstance(name, str):
            raise CheckpointError(
                f"{source}: unsupported state dict key {name!r:.40} "
                f"(of type {type(name).__name__}); "
                "the keys of a state dict are tensor names."
            )
        try:
            array = _to_numpy(value, budget)
        except TypeError as error:
            raise CheckpointError(
                f"{source}: entry {name!r} is a {error}, not a tensor; expected a state dict "
                f"(optionally under one of {_WRAPPER_KEYS})."
            ) from None
        state_dict[name.removeprefix("module.")] = array
    return state_dict


def warn_if_not_finite(named_arrays, source):
    """Warn, naming them, about the arrays of ``(name, array)`` pairs that hold NaN or Inf: a
    model loaded from them computes NaN. Takes the pairs one at a time."""
    bad = [
        name
        for name, array in named_arrays
        if (array.dtype == ml_dtypes.bfloat16 or np.issubdtype(array.dtype, np.floating))
        and not np.isfinite(array).all()
    ]
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        warnings.warn(
            f"{source} holds NaN or Inf values in {len(bad)} tensor(s): {shown}. "
            "A model loaded from it computes NaN or Inf.",
            stacklevel=3,
        )


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch checkpoint file, as numpy arrays. Never runs pickled code,
    never reads outside a storage, and allocates at most :data:`MAX_BYTES`; tensors holding NaN
    or Inf are named in a warning."""
    state_dict = _read(Path(path), declared_only=False)
    warn_if_not_finite(state_dict.items(), path)
    return state_dict


def declared_state_dict(path) -> dict[str, DeclaredTensor] | None:
    """The names, shapes and dtypes of a PyTorch checkpoint's tensors, checked as
    :func:`read_state_dict` checks them, with no tensor data decompressed: what a loader
    compares with its model before reading a large file. None for a pre-1.6 file, which only
    torch reads, and reads whole."""
    path = Path(path)
    if path.is_file() and _is_legacy_checkpoint(_first_bytes(path)):
        return None
    return _read(path, declared_only=True)


def _read(path: Path, declared_only: bool):
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    budget = _Budget(MAX_BYTES)
    try:
        if zipfile.is_zipfile(path):
            checkpoint = _read_zip_checkpoint(path, budget, declared_only)
        elif _is_legacy_checkpoint(head := _first_bytes(path)):
            checkpoint = _read_legacy_checkpoint(path)
        elif head.startswith(b"PK\x03\x04"):
            raise CheckpointError(
                f"Cannot read {path}: it begins as a zip archive, but the archive's directory at "
                "its end is missing or damaged: the file is truncated or corrupt."
            )
        else:
            raise CheckpointError(
                f"Cannot read {path}: it is not a PyTorch checkpoint (neither the zip format of "
                "torch.save nor its pre-1.6 format)."
            )
        return unwrap_state_dict(checkpoint, source=str(path), budget=budget)
    except CheckpointError:
        raise
    except _Refused as error:
        raise CheckpointError(
            f"Refusing to read {path}: it holds more than tensors ({error}). Loading it would "
            "run code stored in the file; re-save just the state dict (model.state_dict())."
        ) from None
    except _Unsupported as error:
        raise CheckpointError(
            f"Cannot read {path}: it holds {error}, which is unsupported (cct_fast reads "
            "float, integer and bool tensors)."
        ) from None
    except _TooLarge as error:
        raise CheckpointError(f"Refusing to read {path}: {error}.") from None
    except _Malformed as error:
        raise CheckpointError(
            f"Cannot read {path}: {error}. The file is corrupt, or was not written by torch.save."
        ) from None
    except Exception as error:  # noqa: BLE001 (malformed bytes fail in the parsers' own ways)
        if isinstance(error, MemoryError):
            raise
        raise CheckpointError(
            f"Cannot read {path}: the file is truncated, corrupt or not a PyTorch checkpoint "
            f"({type(error).__name__.lstrip('_')}: {error})."
        ) from None
