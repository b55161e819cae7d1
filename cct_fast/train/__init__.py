"""Training and evaluation: datasets (:mod:`.data`, image files checked up front by
:mod:`.images`), tf.data input pipelines (:mod:`.pipeline`), the official recipe
(:mod:`.recipe`), resumable runs (:mod:`.run`) with their checkpoint format
(:mod:`.run_checkpoint`), and the metrics and curves of a run folder (:mod:`.reports`).

    from cct_fast import train
    run = train.fit(model="cct_2_3x2_32", dataset="digits", out="runs/digits")
"""

from cct_fast.errors import RecipeError, RunError
from cct_fast.train.recipe import Recipe, make_recipe
from cct_fast.train.run import Run, build_model, build_optimizer, evaluate, fit, test_metrics
from cct_fast.train.run_checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "Recipe",
    "RecipeError",
    "Run",
    "RunError",
    "build_model",
    "build_optimizer",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_recipe",
    "save_checkpoint",
    "test_metrics",
]
