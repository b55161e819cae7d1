"""What a run's model and data are made from: the recipe's model for a class count and
vocabulary, the dataset as that model takes it, and a text run's saved encoder."""

from __future__ import annotations

from pathlib import Path

from cct_fast.core.model import CCT
from cct_fast.core.names import is_text_model, model_config
from cct_fast.data.image_data import Dataset, load_dataset, measured
from cct_fast.data.text_data import TextDataset, load_text_dataset
from cct_fast.data.text_encoder import TextEncoder
from cct_fast.errors import RunError
from cct_fast.train.recipe import Recipe
from cct_fast.train.run_folder import ENCODER, RECIPE
from cct_fast.zoo import create_model


def build_model(
    recipe: Recipe, num_classes: int, encoder: TextEncoder | None = None, weights=None
) -> CCT:
    """The recipe's model for ``num_classes``; a text model's vocabulary is ``encoder``'s;
    ``weights`` as :func:`cct_fast.create_model` takes them (a head of another class count is
    left fresh, a positional embedding resized), at the recipe's ``img_size`` if it sets one."""
    sizes = {}
    if is_text_model(recipe.model):
        sizes = dict(vocab_size=encoder.vocab_size, seq_len=encoder.seq_len)
    elif recipe.img_size:
        sizes = dict(img_size=recipe.img_size)
    return create_model(
        recipe.model,
        num_classes=num_classes,
        jit_compile=recipe.jit_compile,
        implementation=recipe.implementation,
        weights=weights,
        dtype=recipe.precision,
        **sizes,
    )


def load_run_dataset(
    model: str,
    spec: str,
    img_size: int | None = None,
    loaded: Dataset | TextDataset | None = None,
) -> Dataset | TextDataset:
    """The dataset ``spec`` as ``model`` takes it: texts, or images with their statistics at
    the size it trains at (``img_size``, or the model name's). ``loaded`` replaces what
    ``spec`` names; its statistics are measured here if it has none."""
    if is_text_model(model):
        return load_text_dataset(spec) if loaded is None else loaded
    size = img_size or model_config(model)["img_size"]
    return load_dataset(spec, size) if loaded is None else measured(loaded, size)


def read_run_encoder(folder: Path, recipe: Recipe) -> TextEncoder:
    """A text run's ``encoder.json``, which must pad to the recipe's ``seq_len``: the model is
    built from the encoder's sizes."""
    encoder = TextEncoder.load(folder / ENCODER)
    if encoder.seq_len != recipe.seq_len:
        raise RunError(
            f"{folder / ENCODER} pads texts to {encoder.seq_len} pieces and {folder / RECIPE} "
            f"says seq_len {recipe.seq_len}: one of them was changed after the run wrote them."
        )
    return encoder
