"""The run checkpoint, ``checkpoint.npz``: weights, optimizer variables and run state in one
``.npz`` of plain arrays (no pickled objects), written atomically after every epoch; the only
file that resuming reads."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np

from cct_fast.base.files import atomic_output
from cct_fast.errors import RunError
from cct_fast.weights.pth import MAX_BYTES, warn_if_not_finite


def seed_states(model):
    return [v for v in model.variables if _is_seed_state(v)]


def _is_seed_state(variable):
    # Their paths hold a process-wide counter, and each epoch re-seeds them: not saved.
    return "seed_generator_state" in variable.path


def save_checkpoint(path, model, recipe, history):
    """Weights, optimizer variables and run state in one ``.npz`` (no pickled objects).
    The random generators' states are left out: each epoch re-seeds them."""
    arrays = {
        f"model/{v.path}": np.asarray(v.numpy()) for v in model.variables if not _is_seed_state(v)
    }
    arrays.update(
        {
            _optimizer_key(i, v): np.asarray(v.numpy())
            for i, v in enumerate(model.optimizer.variables)
        }
    )
    state = {"recipe": recipe.to_dict(), "history": history}
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    with atomic_output(path, expected_bytes=sum(a.nbytes for a in arrays.values())) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)


def load_checkpoint(path, model, recipe):
    """Restore what :func:`save_checkpoint` wrote into ``model`` and its optimizer; returns
    the history. Checks everything before assigning anything, and reads no array data before
    the names, dtypes and shapes in the arrays' headers match the model and the optimizer and
    their total is within :data:`~cct_fast.weights.pth.MAX_BYTES`: a crafted file makes it
    allocate nothing it would not for a real one."""
    targets = [(f"model/{v.path}", v) for v in model.variables if not _is_seed_state(v)]
    targets += [(_optimizer_key(i, v), v) for i, v in enumerate(model.optimizer.variables)]
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {
                name.removesuffix(".npy"): _npy_header(archive, name) for name in archive.namelist()
            }
            _check_headers(path, headers, targets)
            state = json.loads(_read_array(archive, "state").tobytes())
            if state["recipe"] != json.loads(json.dumps(recipe.to_dict())):
                raise RunError(f"{path} was written by another recipe; nothing was loaded.")
            arrays = {key: _read_array(archive, key) for key, _ in targets}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise RunError(
            f"{path} is not a readable cct-fast run checkpoint ({error}); nothing "
            f"was loaded. Remove it to start over."
        ) from None
    warn_if_not_finite(((key, arrays[key]) for key, _ in targets), path)
    for key, variable in targets:
        variable.assign(arrays[key])
    return state["history"]


def _npy_header(archive, name):
    """(shape, dtype) of one .npy entry, from its header alone."""
    with archive.open(name) as entry:
        version = np.lib.format.read_magic(entry)
        read_header = _HEADER_READERS.get(version)
        if read_header is None:
            raise ValueError(f"{name} is .npy version {version}, which numpy.savez does not write")
        shape, _, dtype = read_header(entry)
    return tuple(shape), np.dtype(dtype)


_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_array(archive, key):
    with archive.open(f"{key}.npy") as entry:
        return np.lib.format.read_array(entry, allow_pickle=False)


def _check_headers(path, headers, targets):
    """Refuses a checkpoint whose arrays are not exactly the variables of ``targets`` (plus
    the run state), with their shapes and dtypes, or that would take more than MAX_BYTES."""
    expected = {key: (tuple(v.shape), np.dtype(v.dtype)) for key, v in targets}
    state = headers.pop("state", None)
    if state is None or state[1] != np.uint8 or len(state[0]) != 1:
        raise RunError(f"{path} holds no run state; nothing was loaded. Remove it to start over.")
    missing = [key for key in expected if key not in headers]
    unexpected = [key for key in headers if key not in expected]
    wrong = [
        f"{key} {headers[key][1]}{list(headers[key][0])} vs {dtype}{list(shape)}"
        for key, (shape, dtype) in expected.items()
        if key in headers and headers[key] != (shape, dtype)
    ]
    if missing or unexpected or wrong:
        raise RunError(
            f"{path} does not match this model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong dtypes or shapes {wrong[:3]} ({len(headers)} arrays for "
            f"{len(expected)} variables); nothing was loaded."
        )
    declared = state[0][0] + sum(
        math.prod(shape) * dtype.itemsize for shape, dtype in headers.values()
    )
    if declared > MAX_BYTES:
        raise RunError(
            f"{path} declares {declared:,} bytes of arrays, more than "
            f"cct_fast.weights.pth.MAX_BYTES; nothing was loaded."
        )


def _optimizer_key(index, variable):
    """Without the optimizer's own name, which holds a process-wide counter (adam_w_2/...)."""
    return f"optimizer/{index}:{variable.path.split('/', 1)[-1]}"
