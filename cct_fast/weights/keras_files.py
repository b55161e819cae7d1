"""Keras weight files (``.weights.h5``, ``.keras``) compared with the model before anything loads.

Keras loads a weights file by walking the model and reading the group each of its layers maps
to: a group the model lacks is never read, so the weights of a deeper model lose their last
blocks without a word, and a mismatch fails only after the layers before it were overwritten.
So the file's datasets are first compared with those the model itself writes (a save of its own
weights, so the paths are Keras' own), every difference is named with both shapes, and only a
file that fits is handed to Keras. What the layers adapt on load stays allowed: a learnable
positional embedding for another token count (resized), and the head of another class count,
or none, or one the model does not have (``include_top=False``).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
import zipfile
from pathlib import Path

from cct_fast.errors import CheckpointError
from cct_fast.weights.official_keys import architecture_summary, mismatch_error
from cct_fast.weights.pth import MAX_BYTES, warn_if_not_finite

_KERAS_ARCHIVE_WEIGHTS = "model.weights.h5"
_HEAD = "head"  # the model's attribute, and so the top-level group of its weights
# The optimizer's state, saved with a compiled model: not the model's weights (Keras reads it
# only into a built optimizer).
_OPTIMIZER = "optimizer"


@contextlib.contextmanager
def _open_weights(path: Path):
    """The h5 file of ``path``: itself, or the weights inside a ``.keras`` archive."""
    import h5py

    if path.name.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as archive:
                entry = archive.getinfo(_KERAS_ARCHIVE_WEIGHTS)
                if entry.file_size > MAX_BYTES:
                    raise CheckpointError(
                        f"{path}: its weights take {entry.file_size:,} bytes, "
                        f"more than cct_fast.weights.pth.MAX_BYTES."
                    )
                data = archive.read(entry)
        except KeyError:
            raise CheckpointError(
                f"{path} holds no {_KERAS_ARCHIVE_WEIGHTS}: it is not a Keras 3 .keras file."
            ) from None
        except (zipfile.BadZipFile, EOFError, OSError) as error:
            raise CheckpointError(
                f"Cannot read {path}: the .keras archive is truncated or corrupt ({error})."
            ) from None
        opened = io.BytesIO(data)
    else:
        opened = path
    try:
        file = h5py.File(opened, "r")
    except OSError as error:
        raise CheckpointError(
            f"Cannot read {path}: it is not a readable HDF5 weights file, or is "
            f"truncated ({error})."
        ) from None
    with file:
        yield file


def _datasets(file) -> dict[str, object]:
    import h5py

    found = {}

    def collect(name, item):  # returns None: visititems stops at the first other value
        if isinstance(item, h5py.Dataset):
            found[name] = item

    file.visititems(collect)
    return found


def _model_shapes(model) -> dict[str, tuple]:
    """The dataset paths and shapes of ``model``'s own weights file."""
    import h5py

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        # Keras' variables warn on every save that numpy 2 asks __array__ for a copy keyword.
        warnings.simplefilter("ignore", DeprecationWarning)
        own = Path(folder) / "own.weights.h5"
        model.save_weights(own)
        with h5py.File(own, "r") as file:
            return {name: dataset.shape for name, dataset in _datasets(file).items()}


def _outermost_absent(paths, present) -> list[str]:
    """Each path cut at its first group absent from ``present``'s paths: a whole missing block
    is named once, not once per weight."""
    prefixes = {"/".join(p.split("/")[:i]) for p in present for i in range(1, p.count("/") + 2)}
    cut = set()
    for path in paths:
        parts = path.split("/")
        cut.add(
            next(
                "/".join(parts[:i])
                for i in range(1, len(parts) + 1)
                if "/".join(parts[:i]) not in prefixes
            )
        )
    return sorted(cut)


def _adapts(path, found, expected, allow_new_head) -> bool:
    """Whether a layer adapts a weight of shape ``found`` to ``expected`` on load."""
    if "positional_embedding/" in path:
        return len(found) == 3 and (found[0], found[2]) == (expected[0], expected[2])
    if path.split("/")[0] == _HEAD and allow_new_head:
        return len(found) == len(expected) and found[:-1] == expected[:-1]
    return False


def _keras_architecture(shapes) -> str:
    blocks = {p.split("/")[1] for p in shapes if p.startswith("blocks/")}
    convs = {p.split("/convs/")[1].split("/")[0] for p in shapes if "/convs/" in p}
    width = next((s[0] for p, s in shapes.items() if p.endswith("pre_norm/vars/0")), "unknown")
    head = shapes.get(f"{_HEAD}/vars/0")
    return architecture_summary(len(blocks), width, len(convs), head and head[-1])


def check_keras_weights(model, path, allow_new_head=True) -> None:
    """Raise :class:`CheckpointError` naming every difference between the file at ``path`` and
    ``model``; warn about weights that hold NaN or Inf."""
    path = Path(path)
    with _open_weights(path) as file:
        datasets = _datasets(file)
        found = {name: dataset.shape for name, dataset in datasets.items()}
        warn_if_not_finite(((name, dataset[()]) for name, dataset in datasets.items()), path)
    expected = _model_shapes(model)

    def optional(name):
        group = name.split("/")[0]
        new_head = model.head is None or (allow_new_head and name not in found)
        return group == _OPTIMIZER or (group == _HEAD and new_head)

    missing = [p for p in expected if p not in found and not optional(p)]
    unexpected = [p for p in found if p not in expected and not optional(p)]
    mismatched = [
        f"{p}: file {found[p]}, model {expected[p]}"
        for p in expected
        if p in found
        and found[p] != expected[p]
        and not _adapts(p, found[p], expected[p], allow_new_head)
    ]
    if missing or unexpected or mismatched:
        raise mismatch_error(
            path,
            model,
            expected=len(expected),
            kind="weights",
            missing=_outermost_absent(missing, found),
            unexpected=_outermost_absent(unexpected, expected),
            mismatched=mismatched,
            held=_keras_architecture(found),
            has=_keras_architecture(expected),
        )


def load_keras_model(path):
    """``keras.models.load_model`` with the file checked first, so that a truncated or foreign
    file is named in a :class:`CheckpointError`."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .keras file at {path}.")
    with _open_weights(path):
        pass
    try:
        return keras.models.load_model(path)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise CheckpointError(f"Cannot load the model in {path}: {error}") from None


__all__ = ["check_keras_weights", "load_keras_model"]
