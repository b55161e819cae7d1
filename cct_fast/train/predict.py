"""Top classes of a trained run for new inputs: image files for an image model, strings for a
text model. The run folder holds all it takes: ``recipe.json`` (the model),
``dataset.json`` (class names, image scaling), ``encoder.json`` (a text model's vocabulary)
and ``best.weights.h5``."""

from __future__ import annotations

import os

import numpy as np

from cct_fast.data.image_data import Dataset, Split
from cct_fast.data.image_files import unusable_images
from cct_fast.data.pipeline import evaluation_batches
from cct_fast.errors import RunError
from cct_fast.train.evaluation import load_run


def predict(
    run_dir: str | os.PathLike, inputs: list[str], top: int = 3, batch_size: int = 64
) -> list[list[tuple[str, float]]]:
    """The ``top`` classes and their probabilities for each input, most probable first.

    Args:
        run_dir: a run folder that finished at least one epoch.
        inputs: image file paths (image model) or texts (text model).
        top: how many classes to give per input.
        batch_size: inputs per forward pass.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise RunError(f"top must be a positive integer; got {top!r}.")
    inputs = list(inputs)
    if not inputs:
        raise RunError("Nothing to predict: give at least one input.")
    run = load_run(run_dir)
    model, encoder = run.model, run.encoder
    if encoder is not None:
        batches = (encoder(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size))
    else:
        batches = _image_batches(inputs, run.dataset_card, model.config.image_size, batch_size)
    logits = np.concatenate(
        [np.asarray(model(batch, training=False), np.float64) for batch in batches]
    )
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    probabilities = shifted / shifted.sum(1, keepdims=True)
    return [
        [(run.class_names[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:top]]
        for row in probabilities
    ]


def _image_batches(paths, card, image_size, batch_size):
    """The images at ``paths``, decoded and scaled as the run's test images were."""
    problems = unusable_images(paths)
    if problems:
        raise RunError(
            "An image model predicts from image files; these cannot be used:\n  "
            + "\n  ".join(problems[:10])
        )
    split = Split(list(map(str, paths)), np.zeros(len(paths), np.int32))
    scaling = Dataset(
        card["dataset"], split, split, card["class_names"], tuple(card["mean"]), tuple(card["std"])
    )
    return (images for images, _ in evaluation_batches(split, scaling, image_size, batch_size))
