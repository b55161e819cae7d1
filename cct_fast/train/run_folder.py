"""A run folder's file names and the recipe a run into it trains by, read without
TensorFlow, so that ``cct-fast train --resume`` refuses a folder it cannot resume before
TensorFlow starts."""

from __future__ import annotations

import json
from pathlib import Path

from cct_fast.data.image_data import Dataset
from cct_fast.data.text_data import TextDataset
from cct_fast.errors import RunError
from cct_fast.train.recipe import Recipe, brief, make_recipe, read_recipe_file

CHECKPOINT = "checkpoint.npz"
RECIPE = "recipe.json"
DATASET_CARD = "dataset.json"
ENCODER = "encoder.json"
TENSORBOARD = "tensorboard"  # event files, with --tensorboard
BEST_WEIGHTS = "best.weights.h5"  # the epoch of highest test accuracy
LAST_WEIGHTS = "last.weights.h5"


def resumable_folder(out) -> Path:
    """``out`` as a path, if it holds a run to resume."""
    if out is None:
        raise RunError("Resuming needs the run folder (--out RUN_DIR).")
    out = Path(out)
    if not (out / CHECKPOINT).exists():
        raise RunError(f"Nothing to resume: {out} holds no {CHECKPOINT}.")
    return out


def check_new_folder(out: Path):
    """A new run's folder must not hold one already."""
    if (out / CHECKPOINT).exists():
        raise RunError(
            f"{out} already holds a run; resume it with --resume or choose another --out."
        )


def resumed_recipe(out: Path, recipe_file, settings: dict) -> Recipe:
    """The saved recipe; a run resumes as it was started, or its schedule would change.
    ``recipe_file`` and ``settings`` (None where unset) may only repeat it."""
    recipe = read_run_recipe(out)
    asked = read_recipe_file(recipe_file) if recipe_file else {}
    asked.update({key: value for key, value in settings.items() if value is not None})
    changed = sorted(key for key, value in asked.items() if getattr(recipe, key, None) != value)
    if changed:
        differences = ", ".join(
            f"{key} {brief(getattr(recipe, key, None))}, asked {brief(asked[key])}"
            for key in changed
        )
        raise RunError(
            f"{out} was started with other settings ({differences}); resume "
            f"it as it was (--resume --out {out}), or start a new run."
        )
    return recipe


def read_run_recipe(folder: Path) -> Recipe:
    if not (folder / RECIPE).is_file():
        raise RunError(f"{folder} is not a run folder: it holds no {RECIPE}.")
    return make_recipe(None, **read_recipe_file(folder / RECIPE))


def dataset_card(dataset: Dataset | TextDataset) -> dict:
    """What predicting with a run needs of its dataset: class names, and the images' scaling."""
    card = {"dataset": dataset.name, "class_names": list(dataset.class_names)}
    if isinstance(dataset, Dataset):
        card.update(mean=list(dataset.mean), std=list(dataset.std))
    return card


def read_dataset_card(folder: Path) -> dict | None:
    """The run's ``dataset.json``, or None for a run from before it was written."""
    path = folder / DATASET_CARD
    if not path.exists():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunError(f"{path} is not readable JSON ({error}).") from None
    if not _is_dataset_card(card):
        raise RunError(
            f"{path} is not what a run writes: expected an object with 'dataset' (a text), "
            "'class_names' (two or more texts) and, for an image run, 'mean' and 'std' (three "
            "numbers each). Remove it to have `cct-fast train --resume` write it again."
        )
    return card


def _is_dataset_card(card):
    def numbers(value):
        return (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        )

    return (
        isinstance(card, dict)
        and isinstance(card.get("dataset"), str)
        and isinstance(card.get("class_names"), list)
        and len(card["class_names"]) >= 2
        and all(isinstance(name, str) for name in card["class_names"])
        and (("mean" in card) == ("std" in card))
        and ("mean" not in card or (numbers(card["mean"]) and numbers(card["std"])))
    )
