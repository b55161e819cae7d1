"""What ``cct-fast train`` checks before TensorFlow starts, which takes seconds (a minute on a
loaded machine): the recipe and its settings, and a text dataset's files. Nothing here
imports TensorFlow; :func:`cct_fast.train.fit` checks all of it again."""

from __future__ import annotations

from cct_fast.core.names import is_text_model
from cct_fast.train.recipe import make_recipe
from cct_fast.train.text_data import load_text_dataset


def check_new_run(recipe_file=None, **settings) -> None:
    """Raise what :func:`cct_fast.train.fit` would raise for a new run of these settings on
    a bad recipe file, setting or text dataset file."""
    recipe = make_recipe(recipe_file, **settings)
    if is_text_model(recipe.model):
        load_text_dataset(recipe.dataset)
