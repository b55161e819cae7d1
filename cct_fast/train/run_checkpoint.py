"""The run checkpoint, ``checkpoint.npz``: weights, optimizer variables and run state in one
``.npz`` of plain arrays (no pickled objects), written atomically after every epoch; the only
file that resuming reads."""

from __future__ import annotations

import json
import zipfile

import numpy as np

from cct_fast.errors import RunError
from cct_fast.weights.files import atomic_output


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
    the history. Checks everything before assigning anything."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        state = json.loads(arrays.pop("state").tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise RunError(
            f"{path} is not a readable cct-fast run checkpoint ({error}); nothing "
            f"was loaded. Remove it to start over."
        ) from None
    if state["recipe"] != json.loads(json.dumps(recipe.to_dict())):
        raise RunError(f"{path} was written by another recipe; nothing was loaded.")
    targets = [(f"model/{v.path}", v) for v in model.variables if not _is_seed_state(v)]
    targets += [(_optimizer_key(i, v), v) for i, v in enumerate(model.optimizer.variables)]
    missing = [key for key, _ in targets if key not in arrays]
    wrong = [
        f"{key} {arrays[key].shape} vs {tuple(v.shape)}"
        for key, v in targets
        if key in arrays and arrays[key].shape != tuple(v.shape)
    ]
    if missing or wrong or len(arrays) != len(targets):
        raise RunError(
            f"{path} does not match this model: missing {missing[:3]}, wrong shapes "
            f"{wrong[:3]}, {len(arrays)} arrays for {len(targets)} variables; "
            f"nothing was loaded."
        )
    for key, variable in targets:
        variable.assign(arrays[key])
    return state["history"]


def _optimizer_key(index, variable):
    """Without the optimizer's own name, which holds a process-wide counter (adam_w_2/...)."""
    return f"optimizer/{index}:{variable.path.split('/', 1)[-1]}"
