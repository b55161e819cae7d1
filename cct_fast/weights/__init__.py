"""Weights in and out of a model: official PyTorch checkpoints (:mod:`.pth`, read without
pickled code; :mod:`.official_keys`, the official key names and layouts), Keras weight files
checked against the model (:mod:`.keras_files`), loading and saving (:mod:`.loading`), the
official pretrained checkpoints (:mod:`.pretrained`) and atomic file writes (:mod:`.files`)."""

from cct_fast.weights.loading import load_weights, save_weights

__all__ = ["load_weights", "save_weights"]
