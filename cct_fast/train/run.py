"""Training and evaluation runs: the recipe, one epoch at a time, saved so a run can resume.

A run folder holds ``recipe.json`` (the resolved recipe), ``dataset.json`` (the class names,
and an image dataset's mean and std), for a text model ``encoder.json`` (the
:class:`~cct_fast.data.text_encoder.TextEncoder` learned from the training texts),
``checkpoint.npz`` (weights, optimizer state, finished epochs and metrics),
``last.weights.h5``, ``best.weights.h5`` (highest test accuracy), ``metrics.csv``,
``curves.png`` and, with ``tensorboard``, TensorBoard's event files in ``tensorboard/``. Every
file but those is written whole or not at all. Each epoch re-seeds the model's
dropout generators and the input pipeline from ``(seed, epoch)``, so a resumed run ends
where an uninterrupted one would. With ``distribute`` (:mod:`cct_fast.train.distribute`) a
run trains on several devices or machines, the recipe's batch being the global one; only the
chief worker writes the folder.

    from cct_fast import train
    run = train.fit(model="cct_2_3x2_32", dataset="digits", out="runs/digits")
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cct_fast.base.files import atomic_output, check_room_for, folder_lock
from cct_fast.base.optional import require
from cct_fast.core.costs import check_fits_in_memory
from cct_fast.core.names import is_text_model
from cct_fast.data.image_data import Dataset, undecodable_images
from cct_fast.data.pipeline import epoch_seed, training_batches
from cct_fast.data.text_data import TextDataset
from cct_fast.data.text_encoder import TextEncoder
from cct_fast.data.text_pipeline import text_training_batches
from cct_fast.errors import DatasetError, FolderBusy, RunError
from cct_fast.train.distribute import check_batch, is_chief, make_strategy
from cct_fast.train.evaluation import test_metrics
from cct_fast.train.optimizer import build_optimizer
from cct_fast.train.recipe import Recipe, make_recipe
from cct_fast.train.reports import plot_curves, write_metrics
from cct_fast.train.run_checkpoint import load_checkpoint, save_checkpoint, seed_states
from cct_fast.train.run_folder import (
    BEST_WEIGHTS,
    CHECKPOINT,
    DATASET_CARD,
    ENCODER,
    LAST_WEIGHTS,
    RECIPE,
    TENSORBOARD,
    check_new_folder,
    dataset_card,
    resumable_folder,
    resumed_recipe,
)
from cct_fast.train.run_model import build_model, load_run_dataset, read_run_encoder
from cct_fast.weights.loading import save_weights, variable_bytes
from cct_fast.weights.word_vectors import load_word_vectors


def fit(
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    recipe_file: str | os.PathLike | None = None,
    verbose: int = 1,
    distribute: str = "",
    data: Dataset | TextDataset | None = None,
    **settings,
) -> Run:
    """Train a model as the recipe says, into a run folder that can be resumed.

    Args:
        out: the run folder (default ``runs/MODEL-DATASET-TIME``).
        resume: continue the run in ``out`` after its last finished epoch.
        recipe_file: a JSON or YAML file overriding recipe settings.
        verbose: 0 for silence, 1 for Keras' progress bar and a line per epoch.
        distribute: ``"mirrored"`` (every local GPU) or ``"multiworker"`` (the cluster in
            ``TF_CONFIG``), :mod:`cct_fast.train.distribute`; not part of the recipe, so a
            run may resume on another number of devices.
        data: the dataset that ``settings["dataset"]`` names, already loaded (the command
            line reads a text dataset, or lists and checks an image folder's files, before
            TensorFlow starts, to refuse bad files early); an image dataset's statistics, if
            None, are measured here.
        **settings: recipe fields (:class:`cct_fast.train.recipe.Recipe`): ``model``,
            ``dataset``, ``epochs``, ``batch_size``, ``precision``, ``jit_compile``, ...

    Returns:
        The finished :class:`Run`: its ``model``, ``history`` and ``folder``.
    """
    if resume:
        out = resumable_folder(out)
    else:
        recipe = make_recipe(recipe_file, **settings)
        if out is None:
            dataset = recipe.dataset.replace(":", "_").replace("/", "_")
            out = f"runs/{recipe.model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = Path(out)
    strategy = make_strategy(distribute)
    # One run writes into a folder; the other workers of a cluster only read it.
    lock = folder_lock(out) if is_chief(strategy) else contextlib.nullcontext()
    try:
        with lock:  # held until the run ends
            if resume:
                recipe = resumed_recipe(out, recipe_file, settings)
            else:
                check_new_folder(out)
            return Run(out, recipe, verbose, dataset=data, strategy=strategy).train()
    except FolderBusy as error:
        raise RunError(
            f"{error}: another run is training into it. Wait for it to end, or "
            "choose another --out."
        ) from None


class Run:
    """One training run of ``recipe`` into ``folder``. ``dataset`` (a
    :class:`cct_fast.data.image_data.Dataset`, or a :class:`cct_fast.data.text_data.TextDataset`
    for a text model) replaces the one the recipe names: arrays already in memory, or
    synthetic data. ``strategy`` (a ``tf.distribute.Strategy``, by default TensorFlow's
    current one) holds the model, its optimizer and its training steps."""

    def __init__(
        self,
        folder,
        recipe: Recipe,
        verbose=1,
        dataset: Dataset | TextDataset | None = None,
        strategy: tf.distribute.Strategy | None = None,
    ):
        self.folder, self.recipe, self.verbose = Path(folder), recipe, verbose
        self.strategy = strategy or tf.distribute.get_strategy()
        self.writes = is_chief(self.strategy)  # the folder's one writer
        check_batch(self.strategy, recipe.batch_size)
        self.text = is_text_model(recipe.model)
        self.dataset = load_run_dataset(recipe.model, recipe.dataset, recipe.img_size, dataset)
        self.train_split = self.dataset.train
        if recipe.train_images:
            self.train_split = _first(self.train_split, recipe.train_images)
        self.encoder = self._text_encoder() if self.text else None
        with self.strategy.scope():
            self._build(recipe, verbose)
        self.history = []
        self._summaries = None  # TensorBoard's writer, once an epoch is written

    def _build(self, recipe, verbose):
        """The model, its word vectors and its optimizer, in the strategy's scope."""
        keras.utils.set_random_seed(recipe.seed)
        # Pretrained weights start a fresh run only: a resumed one restores its checkpoint.
        starts = recipe.weights and not (self.folder / CHECKPOINT).exists()
        self.model = build_model(
            recipe, self.dataset.num_classes, self.encoder, recipe.weights if starts else None
        )
        if not tf.config.list_logical_devices("GPU"):  # the batch's memory is this machine's
            check_fits_in_memory(
                self.model.config, recipe.model, examples=recipe.batch_size, training=True
            )
        if self.text and recipe.embeddings:
            found = load_word_vectors(
                self.model,
                recipe.embeddings,
                self.encoder.vocabulary,
                trainable=not recipe.freeze_embeddings,
            )
            if verbose:
                print(
                    f"{found:,} of the {self.encoder.vocab_size:,} vocabulary entries have a "
                    f"vector in {recipe.embeddings}."
                )
        self.steps_per_epoch = max(1, len(self.train_split) // recipe.batch_size)
        self.model.compile(
            optimizer=build_optimizer(self.model, recipe, self.steps_per_epoch),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            jit_compile=recipe.jit_compile,
        )
        self.model.optimizer.build(self.model.trainable_variables)

    def train(self):
        self._check_tensorboard()
        if self.writes:
            weights = variable_bytes(self.model.weights)
            state = weights + variable_bytes(self.model.optimizer.variables)
            sizes = {BEST_WEIGHTS: weights, LAST_WEIGHTS: weights, CHECKPOINT: state}
            check_room_for(self.folder, sizes, "this run")
        if (self.folder / CHECKPOINT).exists():
            self._restore()
            if self.history and self.history[-1]["test_accuracy"] is None:
                self._finish_epoch()  # its evaluation failed last time
        elif self.writes:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.recipe.save(self.folder / RECIPE)
            if self.encoder is not None:
                self.encoder.save(self.folder / ENCODER)
        if self.writes and not (self.folder / DATASET_CARD).exists():
            # runs from before 0.3 gain it on resume
            _write_json(self.folder / DATASET_CARD, dataset_card(self.dataset))
        for epoch in range(len(self.history), self.recipe.total_epochs):
            started = time.perf_counter()
            self._reseed(epoch)
            try:
                result = self._read_images(
                    self.train_split, functools.partial(self._train_epoch, epoch)
                )
            except KeyboardInterrupt:
                if self.writes:
                    self._save_interrupted(epoch)
                raise
            loss = result.history["loss"][-1]
            if not np.isfinite(loss):
                raise RunError(self._diverged(epoch, loss))
            self.history.append(
                {
                    "epoch": epoch + 1,
                    "learning_rate": float(self.model.optimizer.learning_rate),
                    "train_loss": float(loss),
                    "test_loss": None,
                    "test_accuracy": None,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
            self._finish_epoch()
        return self

    def _train_epoch(self, epoch):
        return self.model.fit(
            self.epoch_batches(epoch),
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,
            verbose=self.verbose,
            callbacks=[keras.callbacks.TerminateOnNaN(), *self._progress()],
        )

    def _finish_epoch(self):
        """Evaluate the epoch just trained and save everything. If the evaluation fails, the
        trained epoch is saved first (its test figures pending), so ``--resume`` evaluates it
        instead of training it again."""
        row, started = self.history[-1], time.perf_counter()
        try:
            with self._averaged_weights():
                test = self._read_images(self.dataset.test, self.test_metrics)
        except BaseException:
            if not self.writes:
                raise
            try:
                save_checkpoint(self.folder / CHECKPOINT, self.model, self.recipe, self.history)
                kept = (
                    f"the epoch's training is saved in {self.folder / CHECKPOINT}, and "
                    "`--resume` evaluates it first"
                )
            except OSError as error:  # report the evaluation's failure, not this one
                kept = f"saving the epoch's training failed too ({error})"
            print(f"\nThe evaluation after epoch {row['epoch']} failed; {kept}.")
            raise
        row.update(
            test_loss=test["loss"],
            test_accuracy=test["accuracy"],
            seconds=round(row["seconds"] + time.perf_counter() - started, 2),
        )
        if self.writes:
            self._save_epoch()
        if self.writes and self.recipe.tensorboard:
            self._write_tensorboard(row)
        if self.verbose:
            print(
                f"epoch {row['epoch']}/{self.recipe.total_epochs}: test accuracy "
                f"{test['accuracy']:.4f}, loss {test['loss']:.4f}"
            )

    def _check_tensorboard(self):
        """Before the first epoch: TensorFlow writes summaries only with tensorboard."""
        if self.recipe.tensorboard:
            require("tensorboard", "tensorboard=True", "'cct-fast[tensorboard]'")

    def _write_tensorboard(self, row):
        """The epoch's row as scalars in ``tensorboard/``, at step ``epoch``; after the first
        epoch of an image run, its first augmented batch too (normalisation undone)."""
        if self._summaries is None:  # one events file for the run's epochs
            self._summaries = tf.summary.create_file_writer(str(self.folder / TENSORBOARD))
        with self._summaries.as_default(step=row["epoch"]):
            for key in ("train_loss", "test_loss", "test_accuracy", "learning_rate"):
                tf.summary.scalar(key, row[key])
            if row["epoch"] == 1 and not self.text:
                images, _ = next(iter(self.epoch_batches(0)))
                mean = tf.constant(self.dataset.mean, tf.float32)
                std = tf.constant(self.dataset.std, tf.float32)
                shown = tf.clip_by_value(tf.cast(images, tf.float32) * std + mean, 0.0, 1.0)
                tf.summary.image("first augmented batch", shown, max_outputs=8)
        self._summaries.flush()

    def _text_encoder(self):
        """The run's saved encoder, or one learned from its training texts."""
        if (self.folder / CHECKPOINT).exists():  # resuming: the vocabulary it trained with
            return read_run_encoder(self.folder, self.recipe)
        return TextEncoder.learn(
            self.train_split.texts,
            vocab_size=self.recipe.vocab_size,
            seq_len=self.recipe.seq_len,
            min_count=self.recipe.vocab_min_count,
        )

    def _read_images(self, split, work):
        """``work()``, with a failure to decode an image of ``split`` named by its file."""
        if self.text:
            return work()
        try:
            return work()
        except tf.errors.InvalidArgumentError as error:
            bad = undecodable_images(split)
            if not bad:
                raise
            raise DatasetError(
                f"TensorFlow cannot decode {len(bad)} image(s): "
                f"{', '.join(bad[:10])}. Remove or replace them."
            ) from error

    def _diverged(self, epoch, loss):
        done = len(self.history)
        kept = (
            f"{self.folder / CHECKPOINT} keeps the run after epoch {done}, its last good one"
            if done
            else "no epoch had finished, so there is nothing to resume"
        )
        return (
            f"The training loss became {loss} in epoch {epoch + 1}: the run stopped, and "
            f"{kept}. Lower the learning rate (lr {self.recipe.lr} in the recipe) and start "
            "a new run."
        )

    def epoch_batches(self, epoch):
        """The (augmented) training batches of ``epoch``."""
        if self.text:
            return text_training_batches(
                self.train_split, self.dataset.num_classes, self.encoder, self.recipe, epoch
            )
        return training_batches(
            self.train_split, self.dataset, self.recipe, self.model.config.image_size, epoch
        )

    def test_metrics(self):
        """Loss and accuracy of the model now on the test split."""
        return test_metrics(
            self.model,
            self.dataset,
            self.recipe.batch_size,
            self.encoder,
            self.recipe.interpolation,
            self.recipe.crop_pct,
        )

    def _progress(self):
        """Keras' progress bar, counting the run's epochs (each ``fit`` call trains one)."""
        if not self.verbose:
            return []
        return [_RunProgress(self.recipe.total_epochs)]

    @property
    def best_accuracy(self):
        return max(row["test_accuracy"] for row in self.history)

    def _reseed(self, epoch):
        """Dropout and drop-path draws of epoch ``epoch`` depend on (seed, epoch) only."""
        for index, state in enumerate(seed_states(self.model)):
            state.assign(
                np.asarray([epoch_seed(self.recipe, epoch, 100 + index), 0], dtype=state.dtype)
            )

    @contextlib.contextmanager
    def _averaged_weights(self):
        """With ``ema_decay``: the weights' moving averages in the model for the block (what an
        epoch evaluates and saves, as timm's model_ema), the trained weights back after it."""
        if not self.recipe.ema_decay:
            yield
            return
        variables = self.model.trainable_variables
        trained = [v.numpy() for v in variables]
        self.model.optimizer.swap_in_averages(variables)
        try:
            yield
        finally:
            for variable, value in zip(variables, trained, strict=True):
                variable.assign(value)

    def _save_epoch(self):
        accuracies = [row["test_accuracy"] for row in self.history]
        with self._averaged_weights():
            if accuracies[-1] >= max(accuracies):
                save_weights(self.model, self.folder / BEST_WEIGHTS)
            save_weights(self.model, self.folder / LAST_WEIGHTS)
        write_metrics(self.folder / "metrics.csv", self.history)
        plot_curves(self.folder / "curves.png", self.history)
        save_checkpoint(self.folder / CHECKPOINT, self.model, self.recipe, self.history)

    def _save_interrupted(self, epoch):
        save_weights(self.model, self.folder / "interrupted.weights.h5")
        if self.history:
            next_step = f"`--resume` restarts epoch {epoch + 1} from {self.folder / CHECKPOINT}"
        else:
            next_step = (
                "no epoch had finished, so there is nothing to resume: run the same "
                "command again to start over"
            )
        print(
            f"\nInterrupted in epoch {epoch + 1}: its weights so far are in "
            f"{self.folder / 'interrupted.weights.h5'}; {next_step}."
        )

    def _restore(self):
        self.history = load_checkpoint(self.folder / CHECKPOINT, self.model, self.recipe)
        if self.verbose:
            print(f"Resuming {self.folder} after epoch {len(self.history)}.")


class _RunProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, with the run's epoch count: each ``fit`` call trains one epoch
    (``initial_epoch=e, epochs=e + 1``), so Keras' own bar would count to the epoch itself."""

    def __init__(self, epochs):
        super().__init__()
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params({**params, "epochs": self.run_epochs})


def _write_json(path, value):
    text = json.dumps(value, indent=2) + "\n"
    with atomic_output(path, expected_bytes=len(text.encode())) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _first(split, count):
    """The first ``count`` examples of ``split``."""
    return dataclasses.replace(
        split, **{f.name: getattr(split, f.name)[:count] for f in dataclasses.fields(split)}
    )
