"""What ``cct-fast train`` checks before TensorFlow starts, which takes seconds (a minute on a
loaded machine): the run folder, the recipe and its settings (a resumed run's saved ones),
and the dataset's files where they are on this machine (a text dataset, an image folder,
ImageNet or Flowers-102's published files). Nothing here imports TensorFlow (but a first
download of agnews or trec, through ``keras.utils.get_file``, and the decode of an image whose
end looks cut short); :func:`cct_fast.train.fit` checks the recipe again and takes the dataset
loaded here."""

from __future__ import annotations

from pathlib import Path

from cct_fast.core.names import is_text_model
from cct_fast.data.image_data import Dataset, load_dataset, reads_local_files
from cct_fast.data.text_data import TextDataset, load_text_dataset
from cct_fast.train.recipe import make_recipe
from cct_fast.train.run_folder import check_new_folder, resumable_folder, resumed_recipe


def check_run(out=None, resume=False, recipe_file=None, **settings) -> Dataset | TextDataset | None:
    """Raise what :func:`cct_fast.train.fit` would raise for these arguments on a bad run
    folder, recipe file, setting or dataset file. Returns the dataset where it was read here,
    for ``fit(data=...)``, so that its files are read once (an image set's statistics are
    measured after TensorFlow starts)."""
    if resume:
        recipe = resumed_recipe(resumable_folder(out), recipe_file, settings)
    else:
        recipe = make_recipe(recipe_file, **settings)
        if out is not None:
            check_new_folder(Path(out))
    if is_text_model(recipe.model):
        return load_text_dataset(recipe.dataset)
    if reads_local_files(recipe.dataset):
        return load_dataset(recipe.dataset, measure=False)
    return None
