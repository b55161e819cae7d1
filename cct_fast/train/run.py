"""Training and evaluation runs: the recipe, one epoch at a time, saved so a run can resume.

A run folder holds ``recipe.json`` (the resolved recipe), ``dataset.json`` (the class names,
and an image dataset's mean and std), for a text model ``encoder.json`` (the
:class:`~cct_fast.train.text_encoder.TextEncoder` learned from the training texts),
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
import importlib.util
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cct_fast.core.costs import check_fits_in_memory
from cct_fast.core.model import CCT
from cct_fast.core.names import is_text_model, model_config
from cct_fast.errors import CheckpointError, DatasetError, FolderBusy, RunError
from cct_fast.train.data import Dataset, load_dataset, measured, undecodable_images
from cct_fast.train.distribute import check_batch, is_chief, make_strategy
from cct_fast.train.pipeline import epoch_seed, evaluation_batches, training_batches
from cct_fast.train.recipe import Recipe, make_recipe
from cct_fast.train.reports import plot_curves, write_metrics
from cct_fast.train.run_checkpoint import load_checkpoint, save_checkpoint, seed_states
from cct_fast.train.run_folder import (
    CHECKPOINT,
    DATASET_CARD,
    ENCODER,
    RECIPE,
    TENSORBOARD,
    check_new_folder,
    read_run_recipe,
    resumable_folder,
    resumed_recipe,
)
from cct_fast.train.text_data import TextDataset, load_text_dataset
from cct_fast.train.text_encoder import TextEncoder
from cct_fast.train.text_pipeline import text_evaluation_batches, text_training_batches
from cct_fast.weights.files import atomic_output, check_room_for, folder_lock
from cct_fast.weights.loading import load_weights, save_weights, variable_bytes
from cct_fast.weights.word_vectors import load_word_vectors
from cct_fast.zoo import create_model


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
    :class:`cct_fast.train.data.Dataset`, or a :class:`cct_fast.train.text_data.TextDataset`
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
            sizes = {"best.weights.h5": weights, "last.weights.h5": weights, CHECKPOINT: state}
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
        if self.recipe.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise RunError(
                "tensorboard=True needs the tensorboard package: pip install tensorboard "
                "(or cct_fast[tensorboard])."
            )

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
                save_weights(self.model, self.folder / "best.weights.h5")
            save_weights(self.model, self.folder / "last.weights.h5")
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
    model: str, spec: str, img_size: int = 0, loaded: Dataset | TextDataset | None = None
) -> Dataset | TextDataset:
    """The dataset ``spec`` as ``model`` takes it: texts, or images with their statistics at
    the size it trains at (``img_size``, or the model name's). ``loaded`` replaces what
    ``spec`` names; its statistics are measured here if it has none."""
    if is_text_model(model):
        return load_text_dataset(spec) if loaded is None else loaded
    size = img_size or model_config(model)["img_size"]
    return load_dataset(spec, size) if loaded is None else measured(loaded, size)


def dataset_card(dataset: Dataset | TextDataset) -> dict:
    """What predicting with a run needs of its dataset: class names, and the images' scaling."""
    card = {"dataset": dataset.name, "class_names": list(dataset.class_names)}
    if isinstance(dataset, Dataset):
        card.update(mean=list(dataset.mean), std=list(dataset.std))
    return card


def _write_json(path, value):
    text = json.dumps(value, indent=2) + "\n"
    with atomic_output(path, expected_bytes=len(text.encode())) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _first(split, count):
    """The first ``count`` examples of ``split``."""
    return dataclasses.replace(
        split, **{f.name: getattr(split, f.name)[:count] for f in dataclasses.fields(split)}
    )


@keras.saving.register_keras_serializable(package="cct_fast")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """timm's step scheduler, per epoch: linear warm-up from ``warmup_lr`` over
    ``warmup_epochs``, then ``peak * decay_rate ** (epoch // decay_epochs)``."""

    def __init__(self, peak, warmup_lr, warmup_epochs, steps_per_epoch, decay_epochs, decay_rate):
        self.peak, self.warmup_lr, self.warmup_epochs = peak, warmup_lr, warmup_epochs
        self.steps_per_epoch = steps_per_epoch
        self.decay_epochs, self.decay_rate = decay_epochs, decay_rate

    def __call__(self, step):
        epoch = keras.ops.floor(keras.ops.cast(step, "float32") / self.steps_per_epoch)
        decayed = self.peak * self.decay_rate ** keras.ops.floor(epoch / self.decay_epochs)
        if not self.warmup_epochs:
            return decayed
        warming = self.warmup_lr + epoch * (self.peak - self.warmup_lr) / self.warmup_epochs
        return keras.ops.where(epoch < self.warmup_epochs, warming, decayed)

    def get_config(self):
        return dict(
            peak=self.peak,
            warmup_lr=self.warmup_lr,
            warmup_epochs=self.warmup_epochs,
            steps_per_epoch=self.steps_per_epoch,
            decay_epochs=self.decay_epochs,
            decay_rate=self.decay_rate,
        )


class AveragingAdamW(keras.optimizers.AdamW):
    """AdamW with ``use_ema`` whose ``fit`` leaves the trained weights in the model. Keras
    puts the moving averages into the model at the end of every ``fit``, and a run calls
    ``fit`` once per epoch, so training would go on from the averages; a run swaps them in
    only to evaluate and save (``Run._averaged_weights``)."""

    def finalize_variable_values(self, var_list):
        pass

    def swap_in_averages(self, var_list):
        """The moving averages into ``var_list`` (the variables the optimizer was built on)."""
        super().finalize_variable_values(var_list)


def build_optimizer(model, recipe, steps_per_epoch):
    """AdamW with linear warm-up from ``warmup_lr`` and cosine decay to ``min_lr`` over
    ``epochs``, per step, then ``min_lr`` through the ``cooldown_epochs`` (or timm's step
    schedule, :class:`StepDecay`), keeping the weights' moving average with ``ema_decay``;
    no weight decay on vectors (norms, biases) and token embeddings, as timm's
    ``filter_bias_and_bn`` and the official ``no_weight_decay``."""

    peak = recipe.learning_rate
    warmup = recipe.warmup_epochs * steps_per_epoch
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "step":
        schedule = StepDecay(
            peak,
            recipe.warmup_lr,
            recipe.warmup_epochs,
            steps_per_epoch,
            recipe.decay_epochs,
            recipe.decay_rate,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.warmup_lr if warmup else peak,
            decay_steps=max(1, total - warmup),
            alpha=recipe.min_lr / peak,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.ema_decay:
        optimizer = AveragingAdamW(
            learning_rate=schedule,
            weight_decay=recipe.weight_decay,
            use_ema=True,
            ema_momentum=recipe.ema_decay,
        )
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay)
    optimizer.exclude_from_weight_decay(
        var_list=[
            v
            for v in model.trainable_variables
            if len(v.shape) <= 1 or "positional_embedding" in v.path or "class_token" in v.path
        ]
    )
    return optimizer


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
    (:func:`cct_fast.train.pipeline.evaluation_batches`); a text model's texts are tokenized
    by ``encoder``."""
    if encoder is not None:
        batches = text_evaluation_batches(dataset.test, encoder, batch_size)
    else:
        size = model.config.image_size
        batches = evaluation_batches(
            dataset.test, dataset, size, batch_size, interpolation, crop_pct
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
        dataset: an image dataset (:func:`cct_fast.train.data.load_dataset`); for a text run
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
        name, weights = recipe.model, source / "best.weights.h5"
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
    data = load_run_dataset(name, dataset, recipe.img_size if source.is_dir() else 0)
    if source.is_dir():
        _check_classes(source, data)
        model = build_model(
            dataclasses.replace(recipe, jit_compile=False), data.num_classes, encoder
        )
    else:
        model = create_model(name, num_classes=data.num_classes)
    try:
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
    weights = folder / "best.weights.h5"
    if not weights.exists():
        raise RunError(f"{folder} holds no best.weights.h5: no epoch of it has finished.")
    encoder = read_run_encoder(folder, recipe) if is_text_model(recipe.model) else None
    classes = card["class_names"]
    model = build_model(dataclasses.replace(recipe, jit_compile=False), len(classes), encoder)
    load_weights(model, weights, allow_new_head=False)
    return TrainedRun(model, recipe, classes, card, encoder)


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
