"""cct_fast: Compact Transformers (CCT, CVT, ViT-Lite) in Keras 3, identical to the official code.

    import cct_fast
    model = cct_fast.create_model("cct_7_3x1_32", weights="cct_7_3x1_32_cifar10_300epochs.pth")
    cct_fast.list_models("cct_14*")

``import cct_fast`` imports the model and its layers, so that ``keras.models.load_model``
finds them in a ``.keras`` file, as Keras users expect. The ``cct-fast`` command is the one
exception: it answers ``--help`` and ``models`` without TensorFlow, and imports the rest on
first use, as every other public name here is.
"""

import importlib
import sys
from pathlib import Path

from cct_fast.lazy import lazy_getattr

__version__ = "0.3.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "CCT": "cct_fast.core.model",
    "TextCCT": "cct_fast.core.text_model",
    "CCTConfig": "cct_fast.core.config",
    "MODEL_CONFIGS": "cct_fast.core.names",
    "list_models": "cct_fast.core.names",
    "create_model": "cct_fast.zoo",
    "load_weights": "cct_fast.weights.loading",
    "save_weights": "cct_fast.weights.loading",
    "CctFastError": "cct_fast.errors",
    "CheckpointError": "cct_fast.errors",
    "ConfigError": "cct_fast.errors",
    "ExportError": "cct_fast.errors",
    "RunError": "cct_fast.errors",
}
_SUBPACKAGES = (
    "compute",
    "core",
    "data",
    "errors",
    "export",
    "testing",
    "train",
    "weights",
    "zoo",
)


def _official_names():
    from cct_fast.core.names import list_models

    return list_models()


def _official_model(name):
    """One function per official name: ``cct_fast.cct_7_3x1_32()``."""
    if name not in _official_names():
        raise AttributeError(f"module 'cct_fast' has no attribute {name!r}")
    return getattr(importlib.import_module("cct_fast.zoo"), name)


__getattr__ = lazy_getattr(__name__, _EXPORTS, fallback=_official_model)


def __dir__():
    return sorted({*globals(), *_EXPORTS, *_SUBPACKAGES, *_official_names()})


__all__ = [*_EXPORTS, *_official_names()]

if Path(sys.argv[0] if sys.argv else "").name != "cct-fast":
    importlib.import_module("cct_fast.core.model")  # registers the Keras classes
    importlib.import_module("cct_fast.core.text_model")
    importlib.import_module("cct_fast.weights.loading")  # the models' checked load_weights
