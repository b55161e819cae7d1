"""Loading weights into a model by file type: official PyTorch checkpoints or Keras weights."""

from __future__ import annotations

from pathlib import Path

from cct_fast.checkpoint import CheckpointError, read_state_dict
from cct_fast.convert import load_official_state_dict
from cct_fast.files import atomic_output

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".tar")
KERAS_SUFFIXES = (".weights.h5", ".keras")


def load_weights(model, path) -> None:
    """Load ``path`` into ``model``: a PyTorch checkpoint (``.pth``, ``.pt``, ``.bin``,
    ``.tar``), converted on the fly, or Keras weights (``.weights.h5``, ``.keras``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    name = path.name.lower()
    if name.endswith(TORCH_SUFFIXES):
        load_official_state_dict(model, read_state_dict(path), source=str(path))
    elif name.endswith(KERAS_SUFFIXES):
        try:
            model.load_weights(path)
        except (ValueError, OSError) as error:
            raise CheckpointError(f"Cannot load Keras weights {path} into {model.name}: {error}") from error
    else:
        raise ValueError(
            f"Unknown weights file type {path.name!r}: expected a PyTorch checkpoint "
            f"({', '.join(TORCH_SUFFIXES)}) or Keras weights ({', '.join(KERAS_SUFFIXES)})."
        )


def save_weights(model, path) -> Path:
    """``model.save_weights`` (``.weights.h5``) or ``model.save`` (``.keras``), atomically."""
    path = Path(path)
    with atomic_output(path) as temporary:
        if path.name.endswith(".weights.h5"):
            model.save_weights(temporary)
        elif path.suffix == ".keras":
            model.save(temporary)
        else:
            raise ValueError(f"Cannot save to {path.name!r}: use a .weights.h5 or .keras file name.")
    return path
