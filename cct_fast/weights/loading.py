"""Loading weights into a model by file type (official PyTorch checkpoints or Keras weights),
all or nothing, and saving them atomically."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import keras
import numpy as np

from cct_fast.base.files import atomic_output
from cct_fast.core.encoder_classifier import use_checked_load
from cct_fast.core.model import CCT
from cct_fast.errors import CheckpointError
from cct_fast.weights.keras_files import check_keras_weights
from cct_fast.weights.official_keys import check_official_state_dict, load_official_state_dict
from cct_fast.weights.pth import declared_state_dict, read_state_dict

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".tar")
KERAS_SUFFIXES = (".weights.h5", ".keras")


@contextlib.contextmanager
def _all_or_nothing(model):
    """Put every weight back if loading fails part-way (a layer that cannot adapt what it was
    given, say), so a failed load leaves the model as it was."""
    before = [variable.numpy() for variable in model.weights]
    try:
        yield
    except BaseException:
        for variable, value in zip(model.weights, before, strict=False):
            variable.assign(value)
        raise


def load_weights(model: CCT, path: str | os.PathLike, *, allow_new_head: bool = True) -> None:
    """Load a weights file into ``model``, all or nothing.

    The file is compared with the model first and every difference named in one
    :class:`~cct_fast.errors.CheckpointError`; on any failure the model keeps the weights it
    had. A learnable positional embedding made for another image size is resized.

    Args:
        model: a :class:`cct_fast.CCT`.
        path: a PyTorch checkpoint (``.pth``, ``.pt``, ``.bin``, ``.tar``), converted on the
            fly without running pickled code, or Keras weights (``.weights.h5``, ``.keras``).
        allow_new_head: a head for another class count stays freshly initialised, with a
            warning; False refuses it (evaluation, say).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    name = path.name.lower()
    if name.endswith(TORCH_SUFFIXES):
        # Names and shapes first: a table that cannot fit is refused before it is decompressed.
        declared = declared_state_dict(path)
        if declared is not None:
            check_official_state_dict(model, declared, str(path), allow_new_head)
        state_dict = read_state_dict(path)
        with _all_or_nothing(model):
            load_official_state_dict(
                model, state_dict, source=str(path), allow_new_head=allow_new_head
            )
    elif name.endswith(KERAS_SUFFIXES):
        check_keras_weights(model, path, allow_new_head=allow_new_head)
        try:
            with _all_or_nothing(model):
                keras.Model.load_weights(model, path)  # the models' own method runs this
        except (ValueError, OSError) as error:
            raise CheckpointError(
                f"Cannot load Keras weights {path} into {model.name}: {error}; "
                "its weights are unchanged."
            ) from None
    else:
        raise CheckpointError(
            f"Unknown weights file type {path.name!r}: expected a PyTorch checkpoint "
            f"({', '.join(TORCH_SUFFIXES)}) or Keras weights ({', '.join(KERAS_SUFFIXES)})."
        )


def variable_bytes(variables) -> int:
    """The bytes that ``variables``' values take."""
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)


def save_weights(model: CCT, path: str | os.PathLike) -> Path:
    """Save ``model`` whole or not at all.

    Args:
        model: a :class:`cct_fast.CCT`.
        path: ``NAME.weights.h5`` (``model.save_weights``) or ``NAME.keras`` (``model.save``).

    Returns:
        ``path``, written; on failure the file there before is unchanged.
    """
    path = Path(path)
    with atomic_output(path, expected_bytes=variable_bytes(model.weights)) as temporary:
        if path.name.endswith(".weights.h5"):
            model.save_weights(temporary)
        elif path.suffix == ".keras":
            model.save(temporary)
        else:
            raise CheckpointError(
                f"Cannot save to {path.name!r}: use a .weights.h5 or .keras file name."
            )
    return path


use_checked_load(load_weights)
