"""The training recipe: the official CIFAR configuration, overridable from a file.

Precedence, lowest first: the official CIFAR values, the text recipe for a text model
(:data:`TEXT_DEFAULTS`), the defaults of the dataset (``digits`` is 1,437 training images, so
it gets a short schedule without flips or MixUp), a ``--recipe`` file (JSON or YAML, the
official configs' form), then explicit command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
import warnings
from pathlib import Path

import yaml

from cct_fast.base.files import atomic_output
from cct_fast.compute import DEFAULT_IMPLEMENTATION, IMPLEMENTATIONS
from cct_fast.core.names import is_text_model, model_config
from cct_fast.errors import RecipeError
from cct_fast.train.official_configs import (
    OFFICIAL_CONFIGS,
    is_official_config,
    recipe_settings,
)


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
    cooldown_epochs: int = 0  # more epochs at min_lr after the cosine (timm's cooldown)
    # "cosine" (per step), or timm's "step": lr * decay_rate ** (epoch // decay_epochs), per
    # epoch, with no cooldown (as timm's step scheduler).
    schedule: str = "cosine"
    decay_epochs: int = 30
    decay_rate: float = 0.1
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.8  # 0 turns MixUp off
    cutmix_alpha: float = 1.0  # 0 turns CutMix off
    mixup_switch_prob: float = 0.5  # probability of CutMix rather than MixUp for a batch
    mixup_off_epoch: int = 175  # MixUp and CutMix stop here; 0: never (as timm reads it)
    randaugment_ops: int = 2  # 0 turns RandAugment off
    randaugment_magnitude: float = 9.0  # of 10
    randaugment_magnitude_std: float = 0.5
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    random_erasing: float = 0.0  # probability of erasing a patch with per-pixel noise
    # None: the model name's, as create_model takes it; a side trains the model at that size,
    # its positional embedding (from weights, if any) resized as create_model does. (0, which
    # recipes before cct_fast 0.4 saved, reads as None.)
    img_size: int | None = None
    # Evaluation: 0 resizes each image to the model's size; else timm's transform: the shorter
    # side resized to img_size / crop_pct, then the centre crop of img_size.
    crop_pct: float = 0.0
    train_interpolation: str = "bilinear"  # of the training crop: or "bicubic", "random"
    interpolation: str = "bilinear"  # of the evaluation resize: or "bicubic"
    # 0: no averaging; else the weights' exponential moving average at this decay per step
    # (timm's model_ema, through Keras' use_ema) is what each epoch evaluates and saves.
    ema_decay: float = 0.0
    weights: str = ""  # start from these: "official" or a checkpoint file (fine-tuning)
    precision: str = "float32"
    implementation: str = DEFAULT_IMPLEMENTATION  # one of IMPLEMENTATIONS
    jit_compile: bool = False
    seed: int = 0
    tensorboard: bool = False  # also write the epochs and the first augmented batch for it
    train_images: int = 0  # train on the first N training examples only (0: all of them)
    # Text models only.
    seq_len: int = 64  # WordPiece pieces per text, the official default
    vocab_size: int = 30_000  # at most this many WordPiece entries, learned from the train split
    # The WordPiece learner's lowest count for a word or piece to enter the vocabulary
    # (tensorflow-text's lower_thresh, 10 by default, keeps 2,135 entries of fortunes).
    vocab_min_count: int = 10
    # Random deletion: the probability that a training text loses each word piece, drawn
    # afresh every epoch (at least one piece is kept).
    token_dropout: float = 0.0
    embeddings: str = ""  # a GloVe-format file of word vectors for the embedding table
    freeze_embeddings: bool = False  # keep those vectors fixed (the official embed_freeze)

    @property
    def total_epochs(self):
        return self.epochs + (self.cooldown_epochs if self.schedule == "cosine" else 0)

    @property
    def learning_rate(self):
        return self.lr * self.batch_size / self.lr_batch_size

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, path):
        with atomic_output(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


DATASET_DEFAULTS = {
    "digits": dict(
        epochs=40,
        batch_size=64,
        warmup_epochs=3,
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
        randaugment_ops=0,
        crop_scale=(0.85, 1.0),
        hflip=0.0,
        label_smoothing=0.1,
    ),
}
# The official text training recipe was never released; this one was chosen on the fortunes
# split (benchmarks/RESULTS.md), one reason per value:
TEXT_DEFAULTS = dict(
    epochs=20,  # test accuracy levels off by epoch 10-12 on a few thousand short texts
    batch_size=32,  # small corpora give few steps an epoch; batch 32 beat 64 (62.7 %, 59.8 %)
    lr=1e-3,  # at lr_batch_size 32; beat 5e-4 (62.7 % against 59.5 %)
    lr_batch_size=32,
    weight_decay=0.05,  # the embedding table is most of the weights and overfits first
    # Chosen on a validation split of fortunes (benchmarks/text_fortunes.py --validation):
    # pieces seen twice keep 6,699 entries where tensorflow-text's 10 kept 1,670 (+4 points),
    # and deleting half of each training text's pieces, afresh every epoch, is the strongest
    # regulariser of the lot (+8 points; 0.25, 0.4 and 0.6 did less). The learner's count
    # thresholds jump with the corpus: the same settings gave the whole training split 13,451
    # entries, most seen too rarely to learn, so the size is capped near the validated scale
    # (the validation run's vocabulary is the same under the cap).
    vocab_size=6_000,
    vocab_min_count=2,
    token_dropout=0.5,
    warmup_epochs=3,  # as the image recipe, in proportion to its shorter schedule
    label_smoothing=0.1,  # as the image recipe
    mixup_alpha=0.0,  # MixUp, CutMix, RandAugment, crops and flips are image augmentations
    cutmix_alpha=0.0,
    randaugment_ops=0,
    hflip=0.0,
)
# What an image model cannot use, refused there rather than ignored.
TEXT_ONLY_SETTINGS = ("embeddings", "freeze_embeddings", "vocab_min_count", "token_dropout")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
CHOICES = {  # the settings that take one of a few names
    "train_interpolation": ("bilinear", "bicubic", "random"),
    "interpolation": ("bilinear", "bicubic"),
    "schedule": ("cosine", "step"),
}
IMAGE_ONLY_DATASETS = ("digits", "cifar10", "cifar100", "imagenet:", "flowers102", "tfds:")
TEXT_ONLY_DATASETS = ("fortunes", "agnews", "trec", "csv:")


def make_recipe(file=None, **flags):
    """The recipe for ``flags`` (``model``, ``dataset``, ``epochs`` ...; None means unset) over
    the defaults of the dataset and the contents of ``file``: a recipe file, an official
    config file, or the name of an official config (:data:`OFFICIAL_CONFIGS`)."""
    flags = {key: value for key, value in flags.items() if value is not None}
    from_file = _recipe_source(file) if file else {}
    model = flags.get("model", from_file.get("model", Recipe.model))
    text = isinstance(model, str) and is_text_model(model)
    modality = TEXT_DEFAULTS if text else {}
    dataset = flags.get("dataset", from_file.get("dataset", "fortunes" if text else Recipe.dataset))
    values = {"dataset": dataset, **modality, **DATASET_DEFAULTS.get(dataset, {}), **from_file}
    values.update(flags)
    return _validated(values, source=file or "the arguments")


def _recipe_source(file):
    """The settings of ``file``: an official config (by name, or a file of timm's settings)
    mapped to recipe settings, with a note for each setting that changes nothing here."""
    if not Path(file).exists() and str(file) in OFFICIAL_CONFIGS:
        values, source = OFFICIAL_CONFIGS[str(file)], f"{file} (official)"
    else:
        values, source = read_recipe_file(file), str(file)
        if not is_official_config(values, [f.name for f in dataclasses.fields(Recipe)]):
            return values
    settings, notes = recipe_settings(values, source)
    for note in notes:
        warnings.warn(f"cct_fast: {source}: {note}.", UserWarning, stacklevel=3)
    return settings


def read_recipe_file(path):
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise RecipeError(f"Cannot read recipe {path}: {error.strerror}.") from None
    try:
        values = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise RecipeError(
            f"Recipe {path} is not valid {path.suffix[1:].upper() or 'JSON'}: {error}"
        ) from None
    if not isinstance(values, dict):
        raise RecipeError(
            f"Recipe {path} must hold a mapping of settings; got {type(values).__name__}."
        )
    _check_size(values, path)
    return values


# A recipe is a mapping of a few dozen settings of a value or two each. YAML aliases let a
# 300-byte file stand for 9^9 values, which converting or printing would expand: a file past
# these bounds is refused first, in time bounded by them.
MAX_VALUES, MAX_DEPTH, MAX_TEXT = 10_000, 8, 10_000


def _check_size(values, path):
    """Counts every value as its aliases would expand, and stops at the first bound passed."""
    count, stack = 0, [(values, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise RecipeError(
                f"Recipe {path} holds a text of {len(value):,} characters; a setting takes at "
                f"most {MAX_TEXT:,}."
            )
        children = []
        if isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple)):
            children = value
        if count + len(stack) + len(children) > MAX_VALUES or (children and depth >= MAX_DEPTH):
            raise RecipeError(
                f"Recipe {path} holds more than {MAX_VALUES:,} values or nests deeper than "
                f"{MAX_DEPTH} levels (a YAML alias counts each time it is used): a recipe is a "
                "mapping of settings, each a number, a text, true/false or a pair of numbers."
            )
        stack.extend((child, depth + 1) for child in children)


def _in(low, high, low_open=False, high_open=False):
    """A range check and its description: [low, high], ends open as asked (None: unbounded)."""

    def check(value):
        return (
            math.isfinite(value)
            and (low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high))
        )

    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    shown = f"{'-inf' if low is None else low}, {'inf' if high is None else high}"
    return check, f"in {left}{shown}{right}"


_POSITIVE = _in(0, None, low_open=True)
_NON_NEGATIVE = _in(0, None)
_PROBABILITY = _in(0, 1)
RANGES = {
    "epochs": _in(1, None),
    "batch_size": _in(1, None),
    "lr_batch_size": _in(1, None),
    "lr": _POSITIVE,
    "warmup_lr": _NON_NEGATIVE,
    "min_lr": _NON_NEGATIVE,
    "weight_decay": _NON_NEGATIVE,
    "warmup_epochs": _NON_NEGATIVE,
    "cooldown_epochs": _NON_NEGATIVE,
    "decay_epochs": _in(1, None),
    "decay_rate": _in(0, 1, low_open=True),
    "random_erasing": _PROBABILITY,
    "ema_decay": _in(0, 1, high_open=True),
    "img_size": _in(1, None),
    "crop_pct": _in(0, 1),
    "label_smoothing": _in(0, 1, high_open=True),
    "mixup_alpha": _NON_NEGATIVE,
    "cutmix_alpha": _NON_NEGATIVE,
    "mixup_switch_prob": _PROBABILITY,
    "mixup_off_epoch": _NON_NEGATIVE,
    "randaugment_ops": _NON_NEGATIVE,
    "randaugment_magnitude": _in(0, 10),
    "randaugment_magnitude_std": _NON_NEGATIVE,
    "crop_scale": _in(0, 1, low_open=True),
    "crop_ratio": _POSITIVE,
    "hflip": _PROBABILITY,
    "seed": _NON_NEGATIVE,
    "train_images": _NON_NEGATIVE,
    "seq_len": _in(1, None),
    "vocab_size": _in(3, None),  # [UNK], [PAD] and a word
    "vocab_min_count": _in(1, None),
    "token_dropout": _in(0, 1, high_open=True),
}


def _validated(values, source):
    fields = {field.name: field for field in dataclasses.fields(Recipe)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RecipeError(
            f"Unknown recipe setting(s) {unknown} in {source}; known: {sorted(fields)}."
        )
    converted = {key: _converted(key, value, source) for key, value in values.items()}
    recipe = Recipe(**converted)
    if recipe.precision not in PRECISIONS:
        raise RecipeError(f"precision must be one of {PRECISIONS}; got {recipe.precision!r}.")
    for key, choices in CHOICES.items():
        if getattr(recipe, key) not in choices:
            raise RecipeError(
                f"Recipe setting {key} in {source} must be one of {choices}; got "
                f"{getattr(recipe, key)!r}."
            )
    if recipe.implementation not in IMPLEMENTATIONS:
        raise RecipeError(
            f"implementation must be one of {IMPLEMENTATIONS}; got {recipe.implementation!r}."
        )
    for key, (check, expected) in RANGES.items():
        value = getattr(recipe, key)
        if value is None:  # an optional setting left to the model name's
            continue
        pair = value if isinstance(value, tuple) else (value,)
        if not all(check(v) for v in pair) or list(pair) != sorted(pair):
            order = " (low, high)" if isinstance(value, tuple) else ""
            raise RecipeError(
                f"Recipe setting {key}={_shown(value)} in {source}: expected "
                f"{'values' if order else 'a value'} {expected}{order}."
            )
    try:
        model_config(recipe.model)
    except ValueError as error:
        raise RecipeError(f"Recipe setting model in {source}: {error}") from None
    text = is_text_model(recipe.model)
    if recipe.img_size and text:
        raise RecipeError(
            f"Recipe setting img_size={recipe.img_size} in {source}: {recipe.model} is a text "
            "model; it takes seq_len, not an image size."
        )
    if recipe.dataset.startswith(IMAGE_ONLY_DATASETS if text else TEXT_ONLY_DATASETS):
        kind, other = ("a text", "an image") if text else ("an image", "a text")
        raise RecipeError(
            f"Recipe settings in {source}: {recipe.model} is {kind} model and {recipe.dataset} "
            f"{other} dataset. Text models train on fortunes, agnews, trec, csv:PATH or "
            "folder:PATH; image models on digits, cifar10, cifar100, folder:PATH, imagenet:PATH "
            "or flowers102:PATH."
        )
    text_only = [key for key in TEXT_ONLY_SETTINGS if getattr(recipe, key) != getattr(Recipe, key)]
    if text_only and not text:
        raise RecipeError(
            f"Recipe settings in {source}: {', '.join(text_only)} "
            f"{'is' if len(text_only) == 1 else 'are'} for text models; {recipe.model} is an "
            "image model."
        )
    if recipe.freeze_embeddings and not recipe.embeddings:
        raise RecipeError(
            f"Recipe settings in {source}: freeze_embeddings keeps pretrained vectors fixed, "
            "and no embeddings file is given; freezing random vectors would not train them."
        )
    return recipe


def _converted(key, value, source):
    """``value`` as the type of the field ``key``; a bool is not a number here."""
    default = getattr(Recipe, key)
    try:
        # An integer, or None for the model name's (img_size); recipes before 0.4 saved 0.
        if default is None:
            return None if value in (None, 0) else _number(value, int)
        if isinstance(default, tuple):
            converted = tuple(_number(v, float) for v in value)
            if len(converted) != 2:
                raise ValueError
            return converted
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError
            return value
        return _number(value, type(default))
    except (TypeError, ValueError):
        raise RecipeError(
            f"Recipe setting {key}={brief(value)} in {source}: expected {_expected_kind(default)}."
        ) from None


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 3, 80, 80


def brief(value) -> str:
    """What a message shows of a value that came from a file: never the whole of it."""
    return _BRIEF.repr(value)


def _number(value, kind):
    if isinstance(value, bool):
        raise ValueError
    number = kind(value)
    if kind is int and number != value:  # 2.5 or "2" are not integers
        raise ValueError
    return number


def _shown(value):
    return repr(value).replace("nan", "NaN")


def _expected_kind(default):
    if isinstance(default, tuple):
        return "a pair of numbers"
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "an integer, or null for the model name's",
    }[type(default)]
