"""Training and evaluation: the official recipe and the text recipe (:mod:`.recipe`, reading
the official configs through :mod:`.official_configs`), resumable runs (:mod:`.run`) with
their model and data (:mod:`.run_model`), optimizer and schedules (:mod:`.optimizer`), their
folder's files (:mod:`.run_folder`) and checkpoint format (:mod:`.run_checkpoint`), on
several devices or machines (:mod:`.distribute`), the metrics and curves of a run folder
(:mod:`.reports`), evaluation and a finished run's model (:mod:`.evaluation`), and
prediction from a run folder (:mod:`.predict`). The datasets and their pipelines are
:mod:`cct_fast.data`'s.

    from cct_fast import train
    run = train.fit(model="cct_2_3x2_32", dataset="digits", out="runs/digits")

Each name is imported on first use: the recipe, the run folder's files and the datasets' file
checks need no TensorFlow, so ``cct-fast train`` refuses a bad run folder, recipe or data file
before TensorFlow starts (:mod:`.preflight`).
"""

from cct_fast.lazy import lazy_getattr

# Public name -> the module that defines it.
_EXPORTS = {
    "Recipe": "cct_fast.train.recipe",
    "make_recipe": "cct_fast.train.recipe",
    "RecipeError": "cct_fast.errors",
    "RunError": "cct_fast.errors",
    "Run": "cct_fast.train.run",
    "build_model": "cct_fast.train.run_model",
    "build_optimizer": "cct_fast.train.optimizer",
    "evaluate": "cct_fast.train.evaluation",
    "fit": "cct_fast.train.run",
    "load_run": "cct_fast.train.evaluation",
    "test_metrics": "cct_fast.train.evaluation",
    "load_checkpoint": "cct_fast.train.run_checkpoint",
    "save_checkpoint": "cct_fast.train.run_checkpoint",
    "predict": "cct_fast.train.predict",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__():
    return sorted({*globals(), *_EXPORTS})


__all__ = list(_EXPORTS)
