"""A finished run's model and its evaluation: test loss and accuracy of a run folder's best
weights, or of a weights file, and the best model of a run folder with what predicting
with it needs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from cct_fast.core.model import CCT
from cct_fast.core.names import is_text_model
from cct_fast.data.image_data import Dataset
from cct_fast.data.pipeline import evaluation_batches
from cct_fast.data.text_data import TextDataset
from cct_fast.data.text_encoder import TextEncoder
from cct_fast.data.text_pipeline import text_evaluation_batches
from cct_fast.errors import CheckpointError, RunError
from cct_fast.train.recipe import Recipe
from cct_fast.train.run_folder import (
    BEST_WEIGHTS,
    DATASET_CARD,
    read_dataset_card,
    read_run_recipe,
)
from cct_fast.train.run_model import build_model, load_run_dataset, read_run_encoder
from cct_fast.weights.loading import load_weights
from cct_fast.zoo import create_model


def test_metrics(
    model: CCT,
    dataset: Dataset | TextDataset,
    batch_size: int = 256,
    encoder=None,
    interpolation="bilinear",
    crop_pct=0.0,
) -> dict[str, float]:
    """Cross-entropy (``"loss"``) and top-1 accuracy (``"accuracy"``) on the test split, images
    brought to the model's size by ``interpolation`` and ``crop_pct``
    (:func:`cct_fast.data.pipeline.evaluation_batches`); a text model's texts are tokenized
    by ``encoder``."""
    if encoder is not None:
        batches = text_evaluation_batches(dataset.test, encoder, batch_size)
    else:
        image_size = model.config.image_size
        batches = evaluation_batches(
            dataset.test, dataset, image_size, batch_size, interpolation, crop_pct
        )
    logits, labels = [], []
    for inputs, batch_labels in batches:
        logits.append(np.asarray(model(inputs, training=False), np.float64))
        labels.append(batch_labels.numpy())
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    shifted = logits - logits.max(1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return {
        "loss": float(-log_probabilities[np.arange(len(labels)), labels].mean()),
        "accuracy": float((logits.argmax(1) == labels).mean()),
    }


def evaluate(
    source: str | os.PathLike,
    dataset: str,
    model: str | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Test loss and accuracy of a run's best weights, or of a weights file.

    Args:
        source: a run folder (its ``best.weights.h5``) or a weights file of an image model.
        dataset: an image dataset (:func:`cct_fast.data.image_data.load_dataset`); for a text run
            ``fortunes``, ``agnews``, ``trec``, ``csv:PATH`` or ``folder:PATH``.
        model: the official name a weights file holds (a run folder knows its own).
        batch_size: examples per evaluation batch.

    Returns:
        ``{"loss": cross-entropy, "accuracy": top-1}`` on the test split. The weights' head
        must have the dataset's classes: a head for other classes is refused, and so is a
        run whose class names differ from the dataset's.
    """
    source = Path(source)
    encoder = None
    if source.is_dir():
        recipe = read_run_recipe(source)
        name, weights = recipe.model, source / BEST_WEIGHTS
        if is_text_model(name):
            encoder = read_run_encoder(source, recipe)
    elif source.is_file():
        if model is None:
            raise RunError(f"{source} is a weights file: say which model it holds (--model).")
        if is_text_model(model):
            raise RunError(
                f"{model} is a text model: its weights index the vocabulary of the run that "
                "trained them, so evaluate the run folder (it holds encoder.json)."
            )
        name, weights = model, source
    else:
        raise FileNotFoundError(f"{source} does not exist: pass a run folder or a weights file.")
    data = load_run_dataset(name, dataset, recipe.img_size if source.is_dir() else None)
    try:
        if source.is_dir():
            _check_classes(source, data)
            model = _best_model(source, recipe, data.num_classes, encoder)
        else:
            model = create_model(name, num_classes=data.num_classes)
            load_weights(model, weights, allow_new_head=False)
    except CheckpointError as error:
        raise RunError(
            f"Cannot evaluate {weights} on {dataset} ({data.num_classes} classes): {error}"
        ) from None
    if source.is_dir():
        return test_metrics(model, data, batch_size, encoder, recipe.interpolation, recipe.crop_pct)
    return test_metrics(model, data, batch_size, encoder)


@dataclasses.dataclass
class TrainedRun:
    """A run folder's best model, with what reading its inputs takes."""

    model: CCT
    recipe: Recipe
    class_names: list[str]
    dataset_card: dict
    encoder: TextEncoder | None


def load_run(folder: str | os.PathLike) -> TrainedRun:
    """The best weights of the run in ``folder``, in the model they were trained in."""
    folder = Path(folder)
    recipe = read_run_recipe(folder)
    card = read_dataset_card(folder)
    if card is None:
        raise RunError(
            f"{folder} has no {DATASET_CARD} (runs before cct_fast 0.3 did not write it), so "
            "its class names are unknown; `cct-fast evaluate` still works on it."
        )
    encoder = read_run_encoder(folder, recipe) if is_text_model(recipe.model) else None
    classes = card["class_names"]
    model = _best_model(folder, recipe, len(classes), encoder)
    return TrainedRun(model, recipe, classes, card, encoder)


def run_examples(
    run: TrainedRun, split: str, limit: int | None = None, seed: int = 0
) -> tuple[np.ndarray | tuple[np.ndarray, np.ndarray], np.ndarray]:
    """``(inputs, labels)`` of the run's dataset's ``split`` (``"train"`` or ``"test"``) as its
    model takes them at test time: images resized and normalised as the run evaluates them,
    or a text model's ``(token_ids, mask)``; no augmentation. ``limit`` draws that many
    examples at random (``seed``), in the split's order."""
    recipe = run.recipe
    data = load_run_dataset(recipe.model, recipe.dataset, recipe.img_size)
    part = getattr(data, split)
    if limit is not None and limit < len(part):
        chosen = np.sort(np.random.default_rng(seed).choice(len(part), limit, replace=False))
        part = _subset(part, chosen)
    if run.encoder is not None:
        batches = text_evaluation_batches(part, run.encoder, 256)
    else:
        batches = evaluation_batches(
            part, data, run.model.config.image_size, 256, recipe.interpolation, recipe.crop_pct
        )
    inputs, labels = [], []
    for batch, batch_labels in batches:
        inputs.append(tuple(np.asarray(x) for x in batch) if run.encoder else np.asarray(batch))
        labels.append(batch_labels.numpy())
    labels = np.concatenate(labels)
    if run.encoder is not None:
        return tuple(np.concatenate(column) for column in zip(*inputs, strict=True)), labels
    return np.concatenate(inputs), labels


def _subset(part, indices):
    """The examples of a split at ``indices``: its texts or images, and their labels."""
    field = "texts" if hasattr(part, "texts") else "images"
    examples = getattr(part, field)
    chosen = [examples[i] for i in indices] if isinstance(examples, list) else examples[indices]
    return dataclasses.replace(part, labels=part.labels[indices], **{field: chosen})


def _best_model(folder, recipe, num_classes, encoder):
    """The run's ``best.weights.h5`` in the model it trained, outside XLA."""
    weights = folder / BEST_WEIGHTS
    if not weights.exists():
        raise RunError(f"{folder} holds no {BEST_WEIGHTS}: no epoch of it has finished.")
    model = build_model(dataclasses.replace(recipe, jit_compile=False), num_classes, encoder)
    load_weights(model, weights, allow_new_head=False)
    return model


def _check_classes(folder, data):
    """As many classes under other names: the head fits, and would be read wrong. (Another
    number of classes is refused when the weights load, with the head's shapes.)"""
    card = read_dataset_card(folder)
    if card is None or len(card["class_names"]) != data.num_classes:
        return
    if card["class_names"] != list(data.class_names):
        raise RunError(
            f"{folder} was trained on the classes {card['class_names'][:10]} and "
            f"{data.name} has {list(data.class_names)[:10]}: the head's outputs would be "
            "read as the wrong classes."
        )
