"""Zip-format PyTorch checkpoints written byte by byte, without torch, so that a test can
declare whatever a hostile file would: sizes, strides and offsets that leave the storage,
element counts that the storage bytes do not hold, dtypes the reader does not support."""

import collections
import io
import pickle
import zipfile

import numpy as np


class Global:
    """``module.name`` as the pickle names it (a GLOBAL opcode), whether or not it exists here."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only reduces with callables
        raise TypeError("a stand-in for a global, never called")


class Call:
    """``func(*args)`` in the pickle (a REDUCE opcode)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class StorageRef:
    """A persistent id ``("storage", torch.<type>, key, "cpu", numel)``."""

    def __init__(self, key, numel, storage_type="FloatStorage"):
        self.pid = ("storage", Global("torch", storage_type), key, "cpu", numel)


def tensor(key, size, stride=None, offset=0, numel=None, storage_type="FloatStorage"):
    """``torch._utils._rebuild_tensor_v2`` of storage ``key`` (``numel`` elements, by default
    just what a contiguous ``size`` needs)."""
    size = tuple(size)
    if stride is None:
        stride = tuple(int(np.prod(size[i + 1 :])) for i in range(len(size)))
    if numel is None:
        numel = offset + int(np.prod(size))
    return Call(
        Global("torch._utils", "_rebuild_tensor_v2"),
        StorageRef(key, numel, storage_type),
        offset,
        size,
        tuple(stride),
        False,
        Call(Global("collections", "OrderedDict")),
    )


class _Pickler(pickle._Pickler):  # the pure-Python pickler lets save() be extended
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, StorageRef) else None


def pickled(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


class Zeros:
    """``nbytes`` zero bytes, streamed into the archive (compressed, they take a thousandth)."""

    def __init__(self, nbytes):
        self.nbytes = nbytes


def write_pth(path, state, storages, deflated=()):
    """A checkpoint at ``path`` holding ``state`` (names to :func:`tensor` calls or other
    picklable values) and the bytes of each storage (``bytes`` or :class:`Zeros`); keys in
    ``deflated`` are stored compressed."""
    with zipfile.ZipFile(path, "w", compresslevel=1) as archive:
        archive.writestr("archive/data.pkl", pickled(collections.OrderedDict(state)))
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            info = zipfile.ZipInfo(f"archive/data/{key}")
            info.compress_type = zipfile.ZIP_DEFLATED if key in deflated else zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as entry:
                if isinstance(data, Zeros):
                    chunk = bytes(min(data.nbytes, 2**24))
                    for start in range(0, data.nbytes, len(chunk)):
                        entry.write(chunk[: data.nbytes - start])
                else:
                    entry.write(data)
    return path


def floats(*values):
    return np.asarray(values, "<f4").tobytes()


_STORAGE_TYPES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
}


def write_state_dict(path, arrays):
    """A well-formed checkpoint of ``arrays`` (name -> numpy array), as torch.save writes one."""
    state, storages = {}, {}
    for key, (name, array) in enumerate(arrays.items()):
        array = np.ascontiguousarray(array)
        state[name] = tensor(str(key), array.shape, storage_type=_STORAGE_TYPES[array.dtype])
        storages[str(key)] = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return write_pth(path, state, storages)
