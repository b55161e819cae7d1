"""Training and evaluation: image datasets (:mod:`.data`, image files checked up front by
:mod:`.images`) and text datasets (:mod:`.text_data`, tokenized by :mod:`.text_encoder`),
tf.data input pipelines (:mod:`.pipeline`, :mod:`.text_pipeline`), the official recipe and
the text recipe (:mod:`.recipe`), resumable runs (:mod:`.run`) with their checkpoint format
(:mod:`.run_checkpoint`), on several devices or machines (:mod:`.distribute`), the metrics
and curves of a run folder (:mod:`.reports`), and prediction from a run folder
(:mod:`.predict`).

    from cct_fast import train
    run = train.fit(model="cct_2_3x2_32", dataset="digits", out="runs/digits")
"""

from cct_fast.errors import RecipeError, RunError
from cct_fast.train import distribute
from cct_fast.train.predict import predict
from cct_fast.train.recipe import Recipe, make_recipe
from cct_fast.train.run import (
    Run,
    build_model,
    build_optimizer,
    evaluate,
    fit,
    load_run,
    test_metrics,
)
from cct_fast.train.run_checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "Recipe",
    "RecipeError",
    "Run",
    "RunError",
    "build_model",
    "build_optimizer",
    "distribute",
    "evaluate",
    "fit",
    "load_run",
    "load_checkpoint",
    "make_recipe",
    "predict",
    "save_checkpoint",
    "test_metrics",
]
