"""Weights in and out of a model: official PyTorch checkpoints (:mod:`.pth`, read without
pickled code; :mod:`.official_keys`, the official key names and layouts), Keras weight files
checked against the model (:mod:`.keras_files`), loading and saving (:mod:`.loading`), the
official pretrained checkpoints (:mod:`.pretrained`) and atomic file writes (:mod:`.files`)."""

from cct_fast.lazy import lazy_getattr

__all__ = ["load_weights", "save_weights"]
# Imported on first use: .files and .pth need no TensorFlow.
__getattr__ = lazy_getattr(__name__, dict.fromkeys(__all__, "cct_fast.weights.loading"))
