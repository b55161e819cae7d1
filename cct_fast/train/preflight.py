"""What ``cct-fast train`` checks before TensorFlow starts, which takes seconds (a minute on a
loaded machine): the recipe and its settings, and a text dataset's files. Nothing here
imports TensorFlow (but a first download of agnews or trec, through ``keras.utils.get_file``);
:func:`cct_fast.train.fit` checks the recipe again and takes the text dataset loaded here."""

from __future__ import annotations

from cct_fast.core.names import is_text_model
from cct_fast.train.recipe import make_recipe
from cct_fast.train.text_data import TextDataset, load_text_dataset


def check_new_run(recipe_file=None, **settings) -> TextDataset | None:
    """Raise what :func:`cct_fast.train.fit` would raise for a new run of these settings on
    a bad recipe file, setting or text dataset file. Returns a text model's dataset, loaded,
    for ``fit(data=...)``, so that its files are read once."""
    recipe = make_recipe(recipe_file, **settings)
    return load_text_dataset(recipe.dataset) if is_text_model(recipe.model) else None
