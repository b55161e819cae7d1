"""Weights in and out of a model: official PyTorch checkpoints (:mod:`.pth`, read without
pickled code; :mod:`.official_keys`, the official key names and layouts), Keras weight files
checked against the model (:mod:`.keras_files`), loading and saving (:mod:`.loading`), the
official pretrained checkpoints (:mod:`.pretrained`) and atomic file writes (:mod:`.files`)."""

import importlib

__all__ = ["load_weights", "save_weights"]


def __getattr__(name):
    """``load_weights`` and ``save_weights``, imported on first use: :mod:`.files` and
    :mod:`.pth` need no TensorFlow."""
    if name not in __all__:
        raise AttributeError(f"module 'cct_fast.weights' has no attribute {name!r}")
    value = getattr(importlib.import_module("cct_fast.weights.loading"), name)
    globals()[name] = value
    return value
