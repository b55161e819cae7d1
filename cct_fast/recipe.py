"""The training recipe: the official CIFAR configuration, overridable from a file.

Precedence, lowest first: the official CIFAR values, the defaults of the dataset (``digits``
is 1,437 training images, so it gets a short schedule without flips or MixUp), a ``--recipe``
file (JSON, or YAML when PyYAML is installed), then explicit command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


class RecipeError(ValueError):
    """A recipe file that cannot be read, or holds unknown keys or bad values."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    model: str = "cct_7_3x1_32"
    dataset: str = "cifar10"
    epochs: int = 300
    batch_size: int = 128
    lr: float = 5.5e-4  # at lr_batch_size; scaled linearly with batch_size
    lr_batch_size: int = 128
    weight_decay: float = 0.06  # not on norms, biases, positional embedding, class token
    warmup_epochs: int = 10
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.8  # 0 turns MixUp off
    cutmix_alpha: float = 1.0  # 0 turns CutMix off
    mixup_switch_prob: float = 0.5  # probability of CutMix rather than MixUp for a batch
    mixup_off_epoch: int = 175
    randaugment_ops: int = 2  # 0 turns RandAugment off
    randaugment_magnitude: float = 9.0  # of 10
    randaugment_magnitude_std: float = 0.5
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    train_images: int = 0  # train on the first N training images only (0: all of them)

    @property
    def learning_rate(self):
        return self.lr * self.batch_size / self.lr_batch_size

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, path):
        from cct_fast.files import atomic_output

        with atomic_output(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


DATASET_DEFAULTS = {
    "digits": dict(epochs=40, batch_size=64, warmup_epochs=3, mixup_alpha=0.0, cutmix_alpha=0.0,
                   randaugment_ops=0, crop_scale=(0.85, 1.0), hflip=0.0, label_smoothing=0.1),
}
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def make_recipe(file=None, **flags):
    """The recipe for ``flags`` (``model``, ``dataset``, ``epochs`` ...; None means unset) over
    the defaults of the dataset and the contents of ``file``."""
    flags = {key: value for key, value in flags.items() if value is not None}
    from_file = read_recipe_file(file) if file else {}
    dataset = flags.get("dataset", from_file.get("dataset", Recipe.dataset))
    values = {**DATASET_DEFAULTS.get(dataset, {}), **from_file, **flags}
    return _validated(values, source=file or "the arguments")


def read_recipe_file(path):
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise RecipeError(f"Cannot read recipe {path}: {error.strerror}.") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise RecipeError(f"{path} is YAML: pip install pyyaml, or write it as JSON.") \
                    from None
            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except (ValueError, ImportError) as error:
        if isinstance(error, RecipeError):
            raise
        raise RecipeError(f"Recipe {path} is not valid {path.suffix[1:].upper() or 'JSON'}: "
                          f"{error}") from None
    if not isinstance(values, dict):
        raise RecipeError(f"Recipe {path} must hold a mapping of settings; got "
                          f"{type(values).__name__}.")
    return values


def _validated(values, source):
    fields = {field.name: field for field in dataclasses.fields(Recipe)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RecipeError(f"Unknown recipe setting(s) {unknown} in {source}; known: "
                          f"{sorted(fields)}.")
    converted = {}
    for key, value in values.items():
        default = getattr(Recipe, key)
        try:
            if isinstance(default, tuple):
                converted[key] = tuple(float(v) for v in value)
                if len(converted[key]) != 2:
                    raise ValueError
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError
                converted[key] = value
            else:
                converted[key] = type(default)(value)
                if isinstance(default, int) and converted[key] != value:
                    raise ValueError
        except (TypeError, ValueError):
            raise RecipeError(f"Recipe setting {key}={value!r} in {source}: expected "
                              f"{_describe(default)}.") from None
    recipe = Recipe(**converted)
    if recipe.precision not in PRECISIONS:
        raise RecipeError(f"precision must be one of {PRECISIONS}; got {recipe.precision!r}.")
    if recipe.epochs < 1 or recipe.batch_size < 1:
        raise RecipeError(f"epochs and batch_size must be positive; got {recipe.epochs}, "
                          f"{recipe.batch_size}.")
    return recipe


def _describe(default):
    if isinstance(default, tuple):
        return "a pair of numbers"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[
        type(default)]
