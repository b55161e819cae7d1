"""The official training configs (SHI-Labs/Compact-Transformers ``configs/``) read as they are.

An official config is a YAML file of the official ``train.py``'s settings under timm's names
(``lr``, ``sched``, ``aa``, ``reprob``, ...); settings it leaves out take that script's
defaults (:data:`TRAIN_PY_DEFAULTS`). :func:`recipe_settings` maps every setting to this
project's recipe, or refuses it by name with what it would need: nothing is dropped silently.
Settings with no training effect here are accepted with a note that says why.

:data:`OFFICIAL_CONFIGS` holds the values of the official files, by file name, so that
``--recipe cct_7-7x2_flowers102`` reproduces a row of the paper's tables.
"""

from __future__ import annotations

import re

from cct_fast.core.cards import DATASETS
from cct_fast.core.names import model_config
from cct_fast.errors import RecipeError

# The official train.py's defaults for the settings a config may leave out (timm 0.4's
# train.py, as the official repository ships it).
TRAIN_PY_DEFAULTS = {
    "batch_size": 32,
    "opt": "sgd",
    "weight_decay": 1e-4,
    "sched": "step",
    "lr": 0.01,
    "warmup_lr": 1e-4,
    "min_lr": 1e-5,
    "epochs": 200,
    "warmup_epochs": 3,
    "cooldown_epochs": 10,
    "decay_epochs": 30,
    "decay_rate": 0.1,
    "scale": [0.08, 1.0],
    "aa": None,
    "reprob": 0.0,
    "remode": "const",
    "mixup": 0.0,
    "cutmix": 0.0,
    "mixup_prob": 1.0,
    "mixup_switch_prob": 0.5,
    "mixup_mode": "batch",
    "mixup_off_epoch": 0,
    "smoothing": 0.1,
    "train_interpolation": "random",
    "amp": False,
    "model_ema": False,
    "model_ema_decay": 0.9998,
    "pretrained": False,
}

# Settings that change nothing here, and why.
NOTED = {
    "workers": "tf.data runs one worker per core (cct_fast/data/pipeline.py)",
}

_RANDAUGMENT = re.compile(r"rand-m(?P<m>[\d.]+)(?P<rest>(-[a-z]+[\d.]+)*)")


def is_official_config(values, recipe_fields) -> bool:
    """Whether a recipe file holds an official config: a setting of the official train.py
    that is not also one of ``recipe_fields`` (the names both use mean the same)."""
    return bool(set(values) & (_SETTINGS - set(recipe_fields)))


def recipe_settings(config, source) -> tuple[dict, list[str]]:
    """The recipe settings of an official config, and notes on the settings that change
    nothing here. Raises :class:`RecipeError` naming a setting it cannot honour."""
    unknown = sorted(set(config) - _SETTINGS)
    if unknown:
        raise RecipeError(
            f"Official config {source}: setting(s) {unknown} are not read by cct_fast; "
            f"known: {sorted(_SETTINGS)}."
        )
    values = {**TRAIN_PY_DEFAULTS, **{key: _as_read(key, v, source) for key, v in config.items()}}

    def refuse(key, why):
        default = (
            ""
            if key in config
            else " (the official train.py's default: the config does not set it)"
        )
        raise RecipeError(f"Official config {source}: {key}={values[key]!r}{default} {why}.")

    settings = {}
    if "model" in values:
        settings["model"] = _model_name(values["model"], source)
    dataset = values.get("dataset")
    if dataset is not None:
        settings["dataset"] = dataset
    _check_dataset_facts(values, dataset, refuse)
    for key, expected in (
        ("opt", "adamw"),
        ("mixup_mode", "batch"),
        ("mixup_prob", 1.0),
    ):
        if values[key] != expected:
            refuse(key, f"is not supported: cct_fast trains with {key}={expected!r} only")
    if values["reprob"] and values["remode"] != "pixel":
        refuse("remode", "is not supported: random erasing fills with per-pixel noise only")
    if values["sched"] not in ("cosine", "step"):
        refuse("sched", "is not supported: cct_fast has the cosine and step schedules only")
    settings.update(
        schedule=values["sched"],
        decay_epochs=values["decay_epochs"],
        decay_rate=values["decay_rate"],
        epochs=values["epochs"],
        batch_size=values["batch_size"],
        # The official lr is for its own batch size; cct_fast scales it with the batch.
        lr=values["lr"],
        lr_batch_size=values["batch_size"],
        weight_decay=values["weight_decay"],
        warmup_epochs=values["warmup_epochs"],
        warmup_lr=values["warmup_lr"],
        min_lr=values["min_lr"],
        cooldown_epochs=values["cooldown_epochs"],
        label_smoothing=values["smoothing"],
        mixup_alpha=values["mixup"],
        cutmix_alpha=values["cutmix"],
        mixup_switch_prob=values["mixup_switch_prob"],
        mixup_off_epoch=values["mixup_off_epoch"],
        crop_scale=tuple(values["scale"]),
        random_erasing=values["reprob"],
        train_interpolation=values["train_interpolation"],
        precision="mixed_bfloat16" if values["amp"] else "float32",
        **_randaugment(values["aa"], refuse),
    )
    for key in ("interpolation", "img_size", "crop_pct"):
        if key in values:
            settings[key] = values[key]
    if values["model_ema"]:
        settings["ema_decay"] = values["model_ema_decay"]
    if values["pretrained"]:
        settings["weights"] = "official"
    notes = [f"{key}={config[key]!r}: {why}" for key, why in NOTED.items() if key in config]
    return settings, notes


# Settings of the official train.py without a default there that the recipe takes, or that
# are honoured by checking them against the dataset.
_CHECKED = {
    "num_classes",
    "img_size",
    "mean",
    "std",
    "crop_pct",
    "interpolation",
    "train_split",
    "val_split",
}
# Every setting of an official config that cct_fast reads.
_SETTINGS = set(TRAIN_PY_DEFAULTS) | _CHECKED | set(NOTED) | {"model", "dataset"}


# Settings the official train.py declares with type=float or type=int: argparse converts a
# string there, and YAML 1.1 reads "5e-4" (no dot) as a string.
_FLOATS = {
    "lr", "min_lr", "warmup_lr", "weight_decay", "mixup", "cutmix", "mixup_prob",
    "mixup_switch_prob", "smoothing", "reprob", "crop_pct", "decay_rate", "model_ema_decay",
}  # fmt: skip
_INTS = {
    "batch_size", "epochs", "warmup_epochs", "cooldown_epochs", "mixup_off_epoch", "img_size",
    "num_classes", "workers", "decay_epochs",
}  # fmt: skip


def _as_read(key, value, source):
    """``value`` as the official train.py reads it: a string converted by the setting's type."""
    kind = float if key in _FLOATS else int if key in _INTS else None
    if kind is None or not isinstance(value, str):
        return value
    try:
        return kind(value)
    except ValueError:
        raise RecipeError(
            f"Official config {source}: {key}={value!r} is not "
            f"{'a number' if kind is float else 'an integer'}."
        ) from None


def _model_name(name, source):
    """The cct_fast name of an official config's model: ``cct_7-3x1_32`` is ``cct_7_3x1_32``,
    ``cct_7-7x2_sinePE_224`` is ``cct_7_7x2_224_sine``."""
    ours = name.replace("-", "_")
    if "_sinePE" in ours:
        ours = ours.replace("_sinePE", "") + "_sine"
    try:
        model_config(ours)
    except ValueError:
        raise RecipeError(
            f"Official config {source}: model={name!r} has no cct_fast model ({ours!r})."
        ) from None
    return ours


def _check_dataset_facts(values, dataset, refuse):
    facts = DATASETS.get(dataset)
    if facts is None:
        for key in ("num_classes", "mean", "std", "train_split", "val_split"):
            if key in values:
                refuse(key, f"cannot be checked: dataset {dataset!r} is not one cct_fast knows")
        return
    if "num_classes" in values and values["num_classes"] != facts.num_classes:
        refuse("num_classes", f"is not {dataset}'s class count ({facts.num_classes})")
    for key in ("mean", "std"):
        official = getattr(facts, key)
        if key in values and tuple(values[key]) != official:
            refuse(key, f"differs from {dataset}'s statistics {official}, which cct_fast uses")
    for key, split in zip(("train_split", "val_split"), facts.splits, strict=True):
        if key in values and values[key] != split:
            refuse(key, f"is not {dataset}'s official {key.split('_')[0]} split ({split!r})")


def _randaugment(policy, refuse):
    """timm's ``rand-m9-mstd0.5-inc1`` as RandAugment settings: magnitude m, its spread
    mstd, n ops (2 unless given). ``inc1`` (timm's magnitude-increasing op set) is taken as
    Keras' RandAugment ops, whose strength grows with the magnitude."""
    if policy is None:
        return dict(randaugment_ops=0)
    match = _RANDAUGMENT.fullmatch(str(policy))
    if match is None:
        refuse("aa", "is not supported: only timm's RandAugment policies (rand-m9-...)")
    options = dict(re.findall(r"-([a-z]+)([\d.]+)", match["rest"]))
    unsupported = sorted(set(options) - {"mstd", "n", "inc"})
    if unsupported:
        refuse("aa", f"has option(s) {unsupported} that cct_fast's RandAugment cannot honour")
    return dict(
        randaugment_ops=int(options.get("n", 2)),
        randaugment_magnitude=float(match["m"]),
        randaugment_magnitude_std=float(options.get("mstd", 0.0)),
    )


def _without(config, *keys):
    return {key: value for key, value in config.items() if key not in keys}


# The official files' values (configs/datasets, configs/pretrained, configs/finetuned).
_AUGMENTATION = dict(
    crop_pct=1.0,
    scale=[0.8, 1.0],
    interpolation="bicubic",
    train_interpolation="random",
    aa="rand-m9-mstd0.5-inc1",
    mixup=0.8,
    mixup_off_epoch=0,
    mixup_prob=1.0,
    mixup_mode="batch",
    mixup_switch_prob=0.5,
    cutmix=1.0,
    reprob=0.25,
    remode="pixel",
    amp=True,
)
_SCHEDULE = dict(
    min_lr=1e-5,
    sched="cosine",
    epochs=300,
    cooldown_epochs=10,
    warmup_epochs=10,
    opt="adamw",
    smoothing=0.1,
    workers=8,
)
_CIFAR10 = dict(
    dataset="cifar10",
    num_classes=10,
    img_size=32,
    mean=[0.4914, 0.4822, 0.4465],
    std=[0.2470, 0.2435, 0.2616],
    **dict(_AUGMENTATION, mixup_off_epoch=175),
    batch_size=128,
    lr=55e-5,
    weight_decay=6e-2,
    warmup_lr=0.00001,
    **_SCHEDULE,
)
_CIFAR100 = dict(
    dataset="cifar100",
    num_classes=100,
    img_size=32,
    mean=[0.5071, 0.4867, 0.4408],
    std=[0.2675, 0.2565, 0.2761],
    **_AUGMENTATION,
    batch_size=128,
    lr=6e-4,
    weight_decay=6e-2,
    warmup_lr=0.000001,
    **_SCHEDULE,
)
_FLOWERS = dict(
    dataset="flowers102",
    num_classes=102,
    img_size=224,
    train_split="train",
    val_split="valid",
    mean=[0.4353, 0.3773, 0.2872],
    std=[0.2966, 0.2455, 0.2698],
    **_AUGMENTATION,
    batch_size=96,
    lr=5e-4,
    weight_decay=6e-2,
    warmup_lr=0.000001,
    **_SCHEDULE,
)
_IMAGENET = dict(
    dataset="imagenet",
    num_classes=1000,
    img_size=224,
    mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225],
    **dict(_AUGMENTATION, crop_pct=0.9, scale=[0.08, 1.0]),
    batch_size=128,
    lr=5e-4,
    weight_decay=5e-2,
    warmup_lr=0.000001,
    **dict(_SCHEDULE, warmup_epochs=25),
)
_CIFAR100_RUN = _without(_CIFAR100, "remode", "workers")
OFFICIAL_CONFIGS: dict[str, dict] = {
    "cifar10": _CIFAR10,
    "cifar100": _CIFAR100,
    "flowers102": _FLOWERS,
    "imagenet": _IMAGENET,
    "cct_7-3x1_cifar10_300epochs": dict(_CIFAR10, reprob=0, model="cct_7-3x1_32", model_ema=False),
    "cct_7-3x1_cifar10_1500epochs": dict(
        _CIFAR10,
        mixup_off_epoch=0,
        model="cct_7_3x1_32_sine",
        model_ema=False,
        lr=5e-4,
        weight_decay=5e-2,
        epochs=1500,
    ),
    "cct_7-3x1_cifar10_5000epochs": dict(
        _CIFAR10,
        mixup_off_epoch=0,
        model="cct_7-3x1_32_sine",
        model_ema=False,
        lr=5e-4,
        weight_decay=5e-2,
        epochs=5000,
    ),
    "cct_7-3x1_cifar100_300epochs": dict(
        _CIFAR100_RUN, reprob=0, model="cct_7-3x1_32", model_ema=False
    ),
    "cct_7-3x1_cifar100_1500epochs": dict(
        _CIFAR100_RUN,
        reprob=0,
        model="cct_7-3x1_32_sine",
        model_ema=False,
        lr=7e-4,
        weight_decay=5e-2,
        epochs=1500,
    ),
    "cct_7-3x1_cifar100_5000epochs": dict(
        _CIFAR100_RUN,
        reprob=0,
        model="cct_7-3x1_32_sine",
        model_ema=False,
        lr=5e-4,
        weight_decay=5e-2,
        epochs=5000,
    ),
    "cct_7-7x2_flowers102": dict(
        _without(_FLOWERS, "reprob", "remode", "workers"),
        model="cct_7-7x2_sinePE_224",
        model_ema=False,
    ),
    "cct_14-7x2_flowers102": dict(
        _without(_FLOWERS, "sched"),
        img_size=384,
        model="cct_14_7x2_384",
        pretrained=True,
        model_ema=False,
        batch_size=20,
        lr=5e-5,
        min_lr=1e-8,
        weight_decay=5e-2,
    ),
    "cct_14-7x2_imagenet": dict(
        _IMAGENET, model="cct_14_7x2_224", model_ema=False, warmup_epochs=10
    ),
    "cct_14-7x2_imagenet384": dict(
        _IMAGENET,
        img_size=384,
        model="cct_14_7x2_224",
        pretrained=True,
        model_ema=False,
        batch_size=96,
        lr=1e-5,
        min_lr=0,
        weight_decay=0,
        epochs=30,
        warmup_epochs=0,
        warmup_lr=0.0,
    ),
}
