"""Training and evaluation runs: the recipe, one epoch at a time, saved so a run can resume.

A run folder holds ``recipe.json`` (the resolved recipe), ``checkpoint.npz`` (weights,
optimizer state, finished epochs and metrics; the only file resuming reads),
``last.weights.h5``, ``best.weights.h5`` (highest test accuracy), ``metrics.csv`` and
``curves.png``. Every file is written whole or not at all. Each epoch re-seeds the model's
dropout generators and the input pipeline from ``(seed, epoch)``, so a resumed run ends
where an uninterrupted one would.

    from cct_fast import train
    run = train.fit(model="cct_2_3x2_32", dataset="digits", out="runs/digits")
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np

from cct_fast.files import FolderBusy, atomic_output, folder_lock
from cct_fast.recipe import Recipe, RecipeError, make_recipe, read_recipe_file

CHECKPOINT = "checkpoint.npz"
RECIPE = "recipe.json"
METRICS = ("epoch", "learning_rate", "train_loss", "test_loss", "test_accuracy", "seconds")


class RunError(RuntimeError):
    """A run folder that cannot be started or resumed as asked."""


def fit(*, out=None, resume=False, recipe_file=None, verbose=1, **settings):
    """Train as the recipe says (``settings`` are recipe fields: ``model``, ``dataset``,
    ``epochs``, ``batch_size``, ``precision``, ...). Returns a :class:`Run`."""
    if out is None:
        if resume:
            raise RunError("Resuming needs the run folder (--out RUN_DIR).")
        dataset = settings.get("dataset") or Recipe.dataset
        out = (f"runs/{settings.get('model') or Recipe.model}-"
               f"{dataset.replace(':', '_').replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(out)
    if resume and not (out / CHECKPOINT).exists():
        raise RunError(f"Nothing to resume: {out} holds no {CHECKPOINT}.")
    recipe = None if resume else make_recipe(recipe_file, **settings)
    try:
        with folder_lock(out):  # held until the run ends: one run writes into a folder
            if resume:
                recipe = _resumed_recipe(out, recipe_file, settings)
            elif (out / CHECKPOINT).exists():
                raise RunError(f"{out} already holds a run; resume it with --resume or choose "
                               f"another --out.")
            return Run(out, recipe, verbose).train()
    except FolderBusy as error:
        raise RunError(f"{error}: another run is training into it. Wait for it to end, or "
                       "choose another --out.") from None


def _resumed_recipe(out, recipe_file, settings):
    """The saved recipe; a run resumes as it was started, or its schedule would change."""
    recipe = make_recipe(None, **read_recipe_file(out / RECIPE))
    asked = read_recipe_file(recipe_file) if recipe_file else {}
    asked.update({key: value for key, value in settings.items() if value is not None})
    changed = sorted(key for key, value in asked.items() if getattr(recipe, key, None) != value)
    if changed:
        raise RunError(f"{out} was started with other settings ({', '.join(changed)}); resume "
                       f"it as it was (--resume --out {out}), or start a new run.")
    return recipe


class Run:
    """One training run of ``recipe`` into ``folder``. ``dataset`` (a :class:`cct_fast.data.Dataset`)
    replaces the one the recipe names: arrays already in memory, or synthetic data."""

    def __init__(self, folder, recipe, verbose=1, dataset=None):
        import keras

        from cct_fast.data import load_dataset
        from cct_fast.zoo import model_config

        self.folder, self.recipe, self.verbose = Path(folder), recipe, verbose
        if dataset is None:
            dataset = load_dataset(recipe.dataset, image_size=model_config(recipe.model)["img_size"])
        self.dataset = dataset
        keras.utils.set_random_seed(recipe.seed)
        self.model = build_model(recipe, self.dataset.num_classes)
        self.image_size = self.model.config.image_size
        self.train_split = self.dataset.train
        if recipe.train_images:
            from cct_fast.data import Split

            self.train_split = Split(self.train_split.images[:recipe.train_images],
                                     self.train_split.labels[:recipe.train_images])
        self.steps_per_epoch = max(1, len(self.train_split) // recipe.batch_size)
        self.model.compile(optimizer=build_optimizer(self.model, recipe, self.steps_per_epoch),
                           loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                           jit_compile=recipe.jit_compile)
        self.model.optimizer.build(self.model.trainable_variables)
        self.history = []

    def train(self):
        import keras

        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / CHECKPOINT).exists():
            self._restore()
            if self.history and self.history[-1]["test_accuracy"] is None:
                self._finish_epoch()  # its evaluation failed last time
        else:
            self.recipe.save(self.folder / RECIPE)
        for epoch in range(len(self.history), self.recipe.epochs):
            started = time.perf_counter()
            self._reseed(epoch)
            try:
                result = self._read_images(self.train_split, lambda: self.model.fit(
                    self.epoch_batches(epoch), initial_epoch=epoch, epochs=epoch + 1,
                    shuffle=False, verbose=self.verbose,
                    callbacks=[keras.callbacks.TerminateOnNaN()]))
            except KeyboardInterrupt:
                self._save_interrupted(epoch)
                raise
            loss = result.history["loss"][-1]
            if not np.isfinite(loss):
                raise RunError(self._diverged(epoch, loss))
            self.history.append({
                "epoch": epoch + 1,
                "learning_rate": float(self.model.optimizer.learning_rate),
                "train_loss": float(loss), "test_loss": None, "test_accuracy": None,
                "seconds": round(time.perf_counter() - started, 2),
            })
            self._finish_epoch()
        return self

    def _finish_epoch(self):
        """Evaluate the epoch just trained and save everything. If the evaluation fails, the
        trained epoch is saved first (its test figures pending), so ``--resume`` evaluates it
        instead of training it again."""
        row, started = self.history[-1], time.perf_counter()
        try:
            test = self._read_images(self.dataset.test, self.evaluate)
        except BaseException:
            try:
                save_checkpoint(self.folder / CHECKPOINT, self.model, self.recipe, self.history)
                kept = (f"the epoch's training is saved in {self.folder / CHECKPOINT}, and "
                        "`--resume` evaluates it first")
            except OSError as error:  # report the evaluation's failure, not this one
                kept = f"saving the epoch's training failed too ({error})"
            print(f"\nThe evaluation after epoch {row['epoch']} failed; {kept}.")
            raise
        row.update(test_loss=test["loss"], test_accuracy=test["accuracy"],
                   seconds=round(row["seconds"] + time.perf_counter() - started, 2))
        self._save_epoch()
        if self.verbose:
            print(f"epoch {row['epoch']}/{self.recipe.epochs}: test accuracy "
                  f"{test['accuracy']:.4f}, loss {test['loss']:.4f}")

    def _read_images(self, split, work):
        """``work()``, with a failure to decode an image of ``split`` named by its file."""
        import tensorflow as tf

        from cct_fast.data import DatasetError, undecodable_images

        try:
            return work()
        except tf.errors.InvalidArgumentError as error:
            bad = undecodable_images(split)
            if not bad:
                raise
            raise DatasetError(f"TensorFlow cannot decode {len(bad)} image(s): "
                               f"{', '.join(bad[:10])}. Remove or replace them.") from error

    def _diverged(self, epoch, loss):
        done = len(self.history)
        kept = (f"{self.folder / CHECKPOINT} keeps the run after epoch {done}, its last good one"
                if done else "no epoch had finished, so there is nothing to resume")
        return (f"The training loss became {loss} in epoch {epoch + 1}: the run stopped, and "
                f"{kept}. Lower the learning rate (lr {self.recipe.lr} in the recipe) and start "
                "a new run.")

    def epoch_batches(self, epoch):
        """The augmented training batches of ``epoch``."""
        from cct_fast.pipeline import training_batches

        return training_batches(self.train_split, self.dataset, self.recipe, self.image_size,
                                epoch)

    def evaluate(self):
        return evaluate_model(self.model, self.dataset, self.recipe.batch_size)

    @property
    def best_accuracy(self):
        return max(row["test_accuracy"] for row in self.history)

    def _reseed(self, epoch):
        """Dropout and drop-path draws of epoch ``epoch`` depend on (seed, epoch) only."""
        from cct_fast.pipeline import epoch_seed

        for index, state in enumerate(_seed_states(self.model)):
            state.assign(np.asarray([epoch_seed(self.recipe, epoch, 100 + index), 0],
                                    dtype=state.dtype))

    def _save_epoch(self):
        from cct_fast.weights import save_weights

        accuracies = [row["test_accuracy"] for row in self.history]
        if accuracies[-1] >= max(accuracies):
            save_weights(self.model, self.folder / "best.weights.h5")
        save_weights(self.model, self.folder / "last.weights.h5")
        _write_metrics(self.folder / "metrics.csv", self.history)
        _plot(self.folder / "curves.png", self.history)
        save_checkpoint(self.folder / CHECKPOINT, self.model, self.recipe, self.history)

    def _save_interrupted(self, epoch):
        from cct_fast.weights import save_weights

        save_weights(self.model, self.folder / "interrupted.weights.h5")
        if self.history:
            next_step = (f"`--resume` restarts epoch {epoch + 1} from "
                         f"{self.folder / CHECKPOINT}")
        else:
            next_step = ("no epoch had finished, so there is nothing to resume: run the same "
                         "command again to start over")
        print(f"\nInterrupted in epoch {epoch + 1}: its weights so far are in "
              f"{self.folder / 'interrupted.weights.h5'}; {next_step}.")

    def _restore(self):
        self.history = load_checkpoint(self.folder / CHECKPOINT, self.model, self.recipe)
        if self.verbose:
            print(f"Resuming {self.folder} after epoch {len(self.history)}.")


def build_model(recipe, num_classes):
    import cct_fast
    from cct_fast.model import dtype_policy

    with dtype_policy(recipe.precision):
        return cct_fast.create_model(recipe.model, num_classes=num_classes,
                                     jit_compile=recipe.jit_compile)


def build_optimizer(model, recipe, steps_per_epoch):
    """AdamW with linear warm-up from ``warmup_lr`` and cosine decay to ``min_lr``, per step;
    no weight decay on vectors (norms, biases) and token embeddings, as timm's
    ``filter_bias_and_bn`` and the official ``no_weight_decay``."""
    import keras

    peak = recipe.learning_rate
    warmup = recipe.warmup_epochs * steps_per_epoch
    total = recipe.epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.warmup_lr if warmup else peak,
        decay_steps=max(1, total - warmup), alpha=recipe.min_lr / peak,
        warmup_target=peak if warmup else None, warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay)
    optimizer.exclude_from_weight_decay(var_list=[
        v for v in model.trainable_variables
        if len(v.shape) <= 1 or "positional_embedding" in v.path or "class_token" in v.path
    ])
    return optimizer


def evaluate_model(model, dataset, batch_size=256):
    """Cross-entropy and top-1 accuracy on the test split."""
    from cct_fast.pipeline import evaluation_batches

    logits, labels = [], []
    for images, batch_labels in evaluation_batches(dataset.test, dataset, model.config.image_size,
                                                   batch_size):
        logits.append(np.asarray(model(images, training=False), np.float64))
        labels.append(batch_labels.numpy())
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    shifted = logits - logits.max(1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return {"loss": float(-log_probabilities[np.arange(len(labels)), labels].mean()),
            "accuracy": float((logits.argmax(1) == labels).mean())}


def evaluate(source, dataset, model=None, batch_size=256):
    """Evaluate a run folder (its best weights) or a weights file (``model`` names it). The
    weights' head must have the dataset's classes: a head for other classes is refused."""
    import cct_fast
    from cct_fast.data import load_dataset
    from cct_fast.zoo import model_config

    source = Path(source)
    if source.is_dir():
        if not (source / RECIPE).is_file():
            raise RunError(f"{source} is not a run folder: it holds no {RECIPE}.")
        recipe = make_recipe(None, **read_recipe_file(source / RECIPE))
        name, weights = recipe.model, source / "best.weights.h5"
    elif source.is_file():
        if model is None:
            raise RunError(f"{source} is a weights file: say which model it holds (--model).")
        name, weights = model, source
    else:
        raise FileNotFoundError(f"{source} does not exist: pass a run folder or a weights file.")
    data = load_dataset(dataset, image_size=model_config(name)["img_size"])
    if source.is_dir():
        model = build_model(dataclasses.replace(recipe, jit_compile=False), data.num_classes)
    else:
        model = cct_fast.create_model(name, num_classes=data.num_classes)
    try:
        cct_fast.load_weights(model, weights, allow_new_head=False)
    except cct_fast.CheckpointError as error:
        raise RunError(f"Cannot evaluate {weights} on {dataset} ({data.num_classes} classes): "
                       f"{error}") from None
    return evaluate_model(model, data, batch_size)


def _seed_states(model):
    return [v for v in model.variables if _is_seed_state(v)]


def _is_seed_state(variable):
    # Their paths hold a process-wide counter, and each epoch re-seeds them: not saved.
    return "seed_generator_state" in variable.path


def save_checkpoint(path, model, recipe, history):
    """Weights, optimizer variables and run state in one ``.npz`` (no pickled objects).
    The random generators' states are left out: each epoch re-seeds them."""
    arrays = {f"model/{v.path}": np.asarray(v.numpy()) for v in model.variables
              if not _is_seed_state(v)}
    arrays.update({_optimizer_key(i, v): np.asarray(v.numpy())
                   for i, v in enumerate(model.optimizer.variables)})
    state = {"recipe": recipe.to_dict(), "history": history}
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    with atomic_output(path, expected_bytes=sum(a.nbytes for a in arrays.values())) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)


def load_checkpoint(path, model, recipe):
    """Restore what :func:`save_checkpoint` wrote into ``model`` and its optimizer; returns
    the history. Checks everything before assigning anything."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        state = json.loads(arrays.pop("state").tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise RunError(f"{path} is not a readable cct-fast run checkpoint ({error}); nothing "
                       f"was loaded. Remove it to start over.") from None
    if state["recipe"] != json.loads(json.dumps(recipe.to_dict())):
        raise RunError(f"{path} was written by another recipe; nothing was loaded.")
    targets = [(f"model/{v.path}", v) for v in model.variables if not _is_seed_state(v)]
    targets += [(_optimizer_key(i, v), v) for i, v in enumerate(model.optimizer.variables)]
    missing = [key for key, _ in targets if key not in arrays]
    wrong = [f"{key} {arrays[key].shape} vs {tuple(v.shape)}" for key, v in targets
             if key in arrays and arrays[key].shape != tuple(v.shape)]
    if missing or wrong or len(arrays) != len(targets):
        raise RunError(f"{path} does not match this model: missing {missing[:3]}, wrong shapes "
                       f"{wrong[:3]}, {len(arrays)} arrays for {len(targets)} variables; "
                       f"nothing was loaded.")
    for key, variable in targets:
        variable.assign(arrays[key])
    return state["history"]


def _optimizer_key(index, variable):
    """Without the optimizer's own name, which holds a process-wide counter (adam_w_2/...)."""
    return f"optimizer/{index}:{variable.path.split('/', 1)[-1]}"


def _write_metrics(path, history):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS)
    writer.writeheader()
    writer.writerows(history)
    with atomic_output(path) as temporary:
        temporary.write_text(buffer.getvalue())


def _plot(path, history):
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return  # the CSV holds the same numbers; matplotlib is optional
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = pyplot.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], label="train (augmented)")
    loss_axes.plot(epochs, [r["test_loss"] for r in history], label="test")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [r["test_accuracy"] for r in history])
    accuracy_axes.set(xlabel="epoch", ylabel="top-1", title="test accuracy")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    pyplot.close(figure)


__all__ = ["fit", "evaluate", "Run", "RunError", "RecipeError", "build_model", "build_optimizer",
           "save_checkpoint", "load_checkpoint"]
