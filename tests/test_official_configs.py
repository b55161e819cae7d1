"""The official training configs (SHI-Labs/Compact-Transformers ``configs/``): their values
as shipped, what each maps to, the settings refused by name, and a run with the Flowers-102
recipe's augmentations on digits."""

import textwrap
import warnings

import numpy as np
import pytest
import tensorflow as tf
import yaml

from cct_fast import train
from cct_fast.core.cards import CARDS
from cct_fast.data import pipeline
from cct_fast.data.image_data import Dataset, Split
from cct_fast.errors import RecipeError
from cct_fast.train.official_configs import OFFICIAL_CONFIGS, recipe_settings
from cct_fast.train.optimizer import build_optimizer
from cct_fast.train.recipe import make_recipe

# The public files, as they read (configs/datasets/*.yml, configs/pretrained/*.yml,
# configs/finetuned/*.yml): written here so that the package's copy is checked against them.
_AUGMENTATION = """
    crop_pct: 1.0
    scale: [0.8, 1.0]
    interpolation: bicubic
    train_interpolation: random
    aa: rand-m9-mstd0.5-inc1
    mixup: 0.8
    mixup_off_epoch: 0
    mixup_prob: 1.0
    mixup_mode: batch
    mixup_switch_prob: 0.5
    cutmix: 1.0
"""
_CIFAR10 = """
    dataset: cifar10
    num_classes: 10
    img_size: 32
    mean: [0.4914, 0.4822, 0.4465]
    std: [0.2470, 0.2435, 0.2616]
"""
_CIFAR100 = """
    dataset: cifar100
    num_classes: 100
    img_size: 32
    mean: [0.5071, 0.4867, 0.4408]
    std: [0.2675, 0.2565, 0.2761]
"""
_FLOWERS = """
    dataset: flowers102
    num_classes: 102
    train_split: train
    val_split: valid
    mean: [0.4353, 0.3773, 0.2872]
    std: [0.2966, 0.2455, 0.2698]
"""
_IMAGENET = """
    dataset: imagenet
    num_classes: 1000
    img_size: 224
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    crop_pct: 0.9
    scale: [0.08, 1.0]
    interpolation: bicubic
    train_interpolation: random
    aa: rand-m9-mstd0.5-inc1
    mixup: 0.8
    mixup_off_epoch: 0
    mixup_prob: 1.0
    mixup_mode: batch
    mixup_switch_prob: 0.5
    cutmix: 1.0
    reprob: 0.25
    remode: pixel
    amp: True
"""
_TAIL = """
    min_lr: 1e-5
    sched: cosine
    epochs: {epochs}
    cooldown_epochs: 10
    warmup_epochs: {warmup}
    warmup_lr: {warmup_lr}
    opt: adamw
    smoothing: 0.1
"""


def _official(*parts, **tail):
    text = "".join(textwrap.dedent(part) for part in parts)
    if tail:
        text += textwrap.dedent(_TAIL).format(**tail)
    return yaml.safe_load(text)


_ERASE = "reprob: 0.25\nremode: pixel\n"
OFFICIAL_FILES = {
    "cifar10": _official(
        _CIFAR10,
        _AUGMENTATION.replace("mixup_off_epoch: 0", "mixup_off_epoch: 175"),
        _ERASE + "amp: True\nbatch_size: 128\nlr: 55e-5\nweight_decay: 6e-2\nworkers: 8\n",
        epochs=300,
        warmup=10,
        warmup_lr="0.00001",
    ),
    "cifar100": _official(
        _CIFAR100,
        _AUGMENTATION,
        _ERASE + "amp: True\nbatch_size: 128\nlr: 6e-4\nweight_decay: 6e-2\nworkers: 8\n",
        epochs=300,
        warmup=10,
        warmup_lr="0.000001",
    ),
    "flowers102": _official(
        _FLOWERS,
        "img_size: 224\n",
        _AUGMENTATION,
        _ERASE + "amp: True\nbatch_size: 96\nlr: 5e-4\nweight_decay: 6e-2\nworkers: 8\n",
        epochs=300,
        warmup=10,
        warmup_lr="0.000001",
    ),
    "imagenet": _official(
        _IMAGENET,
        "batch_size: 128\nlr: 5e-4\nweight_decay: 5e-2\nworkers: 8\n",
        epochs=300,
        warmup=25,
        warmup_lr="0.000001",
    ),
    "cct_7-3x1_cifar10_300epochs": _official(
        _CIFAR10,
        _AUGMENTATION.replace("mixup_off_epoch: 0", "mixup_off_epoch: 175"),
        "reprob: 0\nremode: pixel\namp: True\nmodel: cct_7-3x1_32\nmodel_ema: False\n",
        "batch_size: 128\nlr: 55e-5\nweight_decay: 6e-2\nworkers: 8\n",
        epochs=300,
        warmup=10,
        warmup_lr="0.00001",
    ),
    "cct_7-3x1_cifar10_1500epochs": _official(
        _CIFAR10,
        _AUGMENTATION,
        _ERASE + "amp: True\nmodel: cct_7_3x1_32_sine\nmodel_ema: False\n",
        "batch_size: 128\nlr: 5e-4\nweight_decay: 5e-2\nworkers: 8\n",
        epochs=1500,
        warmup=10,
        warmup_lr="0.00001",
    ),
    "cct_7-3x1_cifar10_5000epochs": _official(
        _CIFAR10,
        _AUGMENTATION,
        _ERASE + "amp: True\nmodel: cct_7-3x1_32_sine\nmodel_ema: False\n",
        "batch_size: 128\nlr: 5e-4\nweight_decay: 5e-2\nworkers: 8\n",
        epochs=5000,
        warmup=10,
        warmup_lr="0.00001",
    ),
    "cct_7-3x1_cifar100_300epochs": _official(
        _CIFAR100,
        _AUGMENTATION,
        "reprob: 0\namp: True\nmodel: cct_7-3x1_32\nmodel_ema: False\n",
        "batch_size: 128\nlr: 6e-4\nweight_decay: 6e-2\n",
        epochs=300,
        warmup=10,
        warmup_lr="0.000001",
    ),
    "cct_7-3x1_cifar100_1500epochs": _official(
        _CIFAR100,
        _AUGMENTATION,
        "reprob: 0\namp: True\nmodel: cct_7-3x1_32_sine\nmodel_ema: False\n",
        "batch_size: 128\nlr: 7e-4\nweight_decay: 5e-2\n",
        epochs=1500,
        warmup=10,
        warmup_lr="0.000001",
    ),
    "cct_7-3x1_cifar100_5000epochs": _official(
        _CIFAR100,
        _AUGMENTATION,
        "reprob: 0\namp: True\nmodel: cct_7-3x1_32_sine\nmodel_ema: False\n",
        "batch_size: 128\nlr: 5e-4\nweight_decay: 5e-2\n",
        epochs=5000,
        warmup=10,
        warmup_lr="0.000001",
    ),
    "cct_7-7x2_flowers102": _official(
        _FLOWERS,
        "img_size: 224\n",
        _AUGMENTATION,
        "amp: True\nmodel: cct_7-7x2_sinePE_224\nmodel_ema: False\n",
        "batch_size: 96\nlr: 5e-4\nweight_decay: 6e-2\n",
        epochs=300,
        warmup=10,
        warmup_lr="0.000001",
    ),
    "cct_14-7x2_flowers102": _official(
        _FLOWERS,
        "img_size: 384\n",
        _AUGMENTATION,
        _ERASE + "amp: True\nmodel: cct_14_7x2_384\npretrained: True\nmodel_ema: False\n",
        "batch_size: 20\nlr: 5e-5\nmin_lr: 1e-8\nweight_decay: 5e-2\nepochs: 300\n",
        "cooldown_epochs: 10\nwarmup_epochs: 10\nwarmup_lr: 0.000001\nopt: adamw\n",
        "smoothing: 0.1\nworkers: 8\n",
    ),
    "cct_14-7x2_imagenet": _official(
        _IMAGENET,
        "model: cct_14_7x2_224\nmodel_ema: False\n",
        "batch_size: 128\nlr: 5e-4\nweight_decay: 5e-2\nworkers: 8\n",
        epochs=300,
        warmup=10,
        warmup_lr="0.000001",
    ),
    "cct_14-7x2_imagenet384": _official(
        _IMAGENET.replace("img_size: 224", "img_size: 384"),
        "model: cct_14_7x2_224\npretrained: True\nmodel_ema: False\n",
        "batch_size: 96\nlr: 1e-5\nmin_lr: 0\nsched: cosine\nweight_decay: 0\nepochs: 30\n",
        "cooldown_epochs: 10\nwarmup_epochs: 0\nwarmup_lr: 0.0\nopt: adamw\nsmoothing: 0.1\n",
        "workers: 8\n",
    ),
}


def _as_argparse_reads(value):
    """YAML 1.1 reads 5e-4 (no dot) as a string; the official train.py's float settings turn
    it into a number."""
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


@pytest.mark.parametrize("name", sorted(OFFICIAL_FILES))
def test_each_shipped_config_holds_the_official_values(name):
    shipped, official = OFFICIAL_CONFIGS[name], OFFICIAL_FILES[name]
    assert sorted(shipped) == sorted(official)
    for key, value in official.items():
        assert shipped[key] == _as_argparse_reads(value), key


def test_a_config_file_is_read_as_the_official_train_py_reads_it(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(
        "model: cct_7-3x1_32\nlr: 55e-5\nweight_decay: 6e-2\nsched: cosine\n"
        "opt: adamw\nbatch_size: 128\n"
    )
    recipe = make_recipe(path)
    assert (recipe.lr, recipe.weight_decay) == (pytest.approx(55e-5), pytest.approx(0.06))
    assert recipe.cooldown_epochs == 10 and recipe.warmup_lr == pytest.approx(1e-4)  # defaults


# What each official model config trains with here (the fields that differ between them).
EXPECTED = {
    "cct_7-3x1_cifar10_300epochs": dict(
        model="cct_7_3x1_32", epochs=300, lr=55e-5, weight_decay=0.06, warmup_lr=1e-5,
        mixup_off_epoch=175, random_erasing=0.0,
    ),
    "cct_7-3x1_cifar10_1500epochs": dict(
        model="cct_7_3x1_32_sine", epochs=1500, lr=5e-4, weight_decay=0.05, warmup_lr=1e-5,
        mixup_off_epoch=0, random_erasing=0.25,
    ),
    "cct_7-3x1_cifar10_5000epochs": dict(
        model="cct_7_3x1_32_sine", epochs=5000, lr=5e-4, weight_decay=0.05, warmup_lr=1e-5,
        mixup_off_epoch=0, random_erasing=0.25,
    ),
    "cct_7-3x1_cifar100_300epochs": dict(
        model="cct_7_3x1_32", epochs=300, lr=6e-4, weight_decay=0.06, warmup_lr=1e-6,
        mixup_off_epoch=0, random_erasing=0.0,
    ),
    "cct_7-3x1_cifar100_1500epochs": dict(
        model="cct_7_3x1_32_sine", epochs=1500, lr=7e-4, weight_decay=0.05, warmup_lr=1e-6,
        mixup_off_epoch=0, random_erasing=0.0,
    ),
    "cct_7-3x1_cifar100_5000epochs": dict(
        model="cct_7_3x1_32_sine", epochs=5000, lr=5e-4, weight_decay=0.05, warmup_lr=1e-6,
        mixup_off_epoch=0, random_erasing=0.0,
    ),
    "cct_7-7x2_flowers102": dict(
        model="cct_7_7x2_224_sine", dataset="flowers102", epochs=300, batch_size=96,
        lr_batch_size=96, lr=5e-4, weight_decay=0.06, warmup_lr=1e-6, mixup_off_epoch=0,
        random_erasing=0.0, img_size=224, crop_pct=1.0,
    ),
    "cct_14-7x2_imagenet": dict(
        model="cct_14_7x2_224", dataset="imagenet", epochs=300, lr=5e-4, weight_decay=0.05,
        warmup_lr=1e-6, mixup_off_epoch=0, random_erasing=0.25, crop_scale=(0.08, 1.0),
        img_size=224, crop_pct=0.9,
    ),
    "cct_14-7x2_imagenet384": dict(
        model="cct_14_7x2_224", dataset="imagenet", img_size=384, weights="official",
        epochs=30, batch_size=96, lr_batch_size=96, lr=1e-5, min_lr=0.0, weight_decay=0.0,
        warmup_epochs=0, warmup_lr=0.0, mixup_off_epoch=0, random_erasing=0.25,
        crop_scale=(0.08, 1.0), crop_pct=0.9,
    ),
}  # fmt: skip
# Shared by all of them: the official schedule's shape, timm's augmentations, amp.
SHARED = dict(
    min_lr=1e-5, cooldown_epochs=10, warmup_epochs=10, label_smoothing=0.1, mixup_alpha=0.8,
    cutmix_alpha=1.0, mixup_switch_prob=0.5, randaugment_ops=2, randaugment_magnitude=9.0,
    randaugment_magnitude_std=0.5, train_interpolation="random", interpolation="bicubic",
    precision="mixed_bfloat16", hflip=0.5, weights="",
)  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_official_config_maps_to_its_recipe(name):
    with warnings.catch_warnings(record=True):
        recipe = make_recipe(name)
    expected = dict(SHARED, batch_size=128, lr_batch_size=128)
    expected.update(EXPECTED[name])
    expected.setdefault("dataset", "cifar100" if "cifar100" in name else "cifar10")
    expected.setdefault("crop_scale", (0.8, 1.0))
    for key, value in expected.items():
        assert getattr(recipe, key) == pytest.approx(value), key


def _config_file(tmp_path, **changes):
    values = dict(OFFICIAL_FILES["cct_7-3x1_cifar10_300epochs"], **changes)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(opt="sgd"), r"opt='sgd' is not supported: cct_fast trains with opt='adamw'"),
        (dict(sched="plateau"), r"sched='plateau' is not supported: .* cosine and step"),
        (dict(aa="v0"), r"aa='v0' is not supported: only timm's RandAugment"),
        (dict(aa="rand-m9-mstd0.5-w1"), r"has option\(s\) \['w'\]"),
        (dict(reprob=0.25, remode="const"), r"remode='const' is not supported"),
        (dict(mixup_prob=0.5), r"mixup_prob=0.5 is not supported"),
        (dict(num_classes=100), r"num_classes=100 is not cifar10's class count \(10\)"),
        (dict(mean=[0.5, 0.5, 0.5]), r"mean=\[0.5, 0.5, 0.5\] differs from cifar10's"),
        (dict(model="cct_9-9x9_32"), r"model='cct_9-9x9_32' has no cct_fast model"),
        (dict(clip_grad=1.0), r"setting\(s\) \['clip_grad'\] are not read by cct_fast"),
    ],
)
def test_a_config_file_setting_that_cannot_be_honoured_is_refused_by_name(
    tmp_path, changes, message
):
    with pytest.raises(RecipeError, match=message):
        make_recipe(_config_file(tmp_path, **changes))


def test_model_ema_maps_to_the_averaged_weights_at_timms_decay(tmp_path):
    with warnings.catch_warnings(record=True):
        assert make_recipe(_config_file(tmp_path, model_ema=True)).ema_decay == 0.9998
        assert make_recipe(_config_file(tmp_path, model_ema=False)).ema_decay == 0.0
        custom = _config_file(tmp_path, model_ema=True, model_ema_decay="5e-1")
        assert make_recipe(custom).ema_decay == 0.5  # read as argparse's type=float reads it


def test_settings_that_change_nothing_here_are_said_not_dropped(tmp_path):
    with pytest.warns(UserWarning, match=r"workers=8: tf.data runs one worker per core"):
        recipe = make_recipe(_config_file(tmp_path))
    assert recipe.model == "cct_7_3x1_32" and recipe.lr == pytest.approx(55e-5)


def test_flags_override_an_official_config(tmp_path):
    with warnings.catch_warnings(record=True):
        recipe = make_recipe("cct_7-3x1_cifar10_300epochs", epochs=3, precision="float32")
    assert (recipe.epochs, recipe.precision, recipe.cooldown_epochs) == (3, "float32", 10)


def _learning_rate_at(recipe, steps_per_epoch):
    """step -> the learning rate the recipe's optimizer applies at that step."""
    import keras

    model = keras.Sequential([keras.layers.Dense(2)])
    model.build((None, 3))
    optimizer = build_optimizer(model, recipe, steps_per_epoch)
    optimizer.build(model.trainable_variables)

    def rate(step):
        optimizer.iterations.assign(step)
        return float(optimizer.learning_rate)

    return rate


def test_the_cooldown_holds_min_lr_after_the_cosine():
    recipe = make_recipe(
        model="cct_2_3x2_32", dataset="digits", epochs=4, warmup_epochs=1, cooldown_epochs=2
    )
    rate = _learning_rate_at(recipe, steps_per_epoch=10)

    assert recipe.total_epochs == 6
    assert rate(10) == pytest.approx(recipe.learning_rate)  # warm-up done
    assert recipe.min_lr < rate(25) < recipe.learning_rate
    for step in (40, 50, 59):  # the two cooldown epochs
        assert rate(step) == pytest.approx(recipe.min_lr)


def test_the_evaluation_crop_keeps_the_centre_as_timm_does():
    """A 40x60 image whose middle 40 columns are green and the rest red: crop_pct 1.0 at 32 px
    keeps the centre (green); resizing the whole image squeezes the red in."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :, 0] = 255
    image[:, 10:50] = (0, 255, 0)
    dataset = Dataset("test", None, Split(image[None], np.array([0])), ["a"], (0, 0, 0), (1, 1, 1))

    def evaluated(crop_pct):
        batches = pipeline.evaluation_batches(
            dataset.test, dataset, (32, 32), 1, "bicubic", crop_pct
        )
        return next(iter(batches))[0][0].numpy() * 255

    cropped, squeezed = evaluated(1.0), evaluated(0.0)
    assert cropped.shape == (32, 32, 3)
    assert np.all(cropped[:, 2:-2, 0] < 30) and np.all(cropped[:, 2:-2, 1] > 225)
    assert np.all(squeezed[:, :3, 0] > 200)  # red at the sides


@pytest.mark.parametrize("crop_pct", [0.875, 0.9])
def test_the_evaluation_crop_is_timms_geometry_at_the_official_crop_pcts(crop_pct):
    """timm's transform computed here: torchvision's Resize(int(32 / crop_pct)) sets the shorter
    side to that and the longer to int(scaled * long / short), CenterCrop(32) starts at
    round((new - 32) / 2). On a 50x79 image of linear ramps (x in red, y in green), bilinear
    resampling keeps the ramps, so each output pixel says which source point it came from."""
    height, width, size = 50, 79, 32
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([3 * x, 4 * y, np.zeros_like(x)], axis=-1).astype(np.uint8)
    dataset = Dataset("test", None, Split(image[None], np.array([0])), ["a"], (0, 0, 0), (1, 1, 1))
    batches = pipeline.evaluation_batches(
        dataset.test, dataset, (size, size), 1, "bilinear", crop_pct
    )
    got = next(iter(batches))[0][0].numpy() * 255

    scaled = int(size / crop_pct)
    new_height, new_width = scaled, int(scaled * width / height)
    top, left = round((new_height - size) / 2), round((new_width - size) / 2)
    rows = (top + np.arange(size) + 0.5) * height / new_height - 0.5
    columns = (left + np.arange(size) + 0.5) * width / new_width - 0.5
    np.testing.assert_allclose(got[..., 0], np.broadcast_to(3 * columns, (size, size)), atol=1.0)
    np.testing.assert_allclose(
        got[..., 1], np.broadcast_to(4 * rows[:, None], (size, size)), atol=1.0
    )


def test_a_digits_run_with_the_flowers_recipe_augmentations_trains_and_evaluates(tmp_path):
    """The official Flowers-102 config (configs/datasets/flowers102.yml, the one with
    RandomErasing): random bicubic/bilinear crops, MixUp/CutMix to the end, the bicubic
    evaluation crop and the cooldown, on a small model at 32 px."""
    with warnings.catch_warnings(record=True):
        run = train.fit(
            out=tmp_path / "run",
            recipe_file="flowers102",
            model="cct_2_3x2_32",
            dataset="digits",
            img_size=32,
            epochs=1,
            cooldown_epochs=1,
            warmup_epochs=0,
            train_images=128,
            batch_size=32,
            precision="float32",
            verbose=0,
        )
    recipe = run.recipe
    assert (recipe.random_erasing, recipe.train_interpolation, recipe.crop_pct) == (
        0.25,
        "random",
        1.0,
    )
    assert (recipe.mixup_off_epoch, recipe.interpolation) == (0, "bicubic")
    assert len(run.history) == 2  # one epoch and one of cooldown
    assert all(0.0 <= row["test_accuracy"] <= 1.0 for row in run.history)
    assert tf.reduce_all(tf.math.is_finite(run.model.trainable_variables[0]))


def test_a_run_starts_from_the_weights_it_is_given(tmp_path, rng):
    """Fine-tuning: ``weights`` (a checkpoint, or "official" as ``pretrained: True`` maps)
    is the run's starting point, before its first step."""
    import cct_fast
    from cct_fast.train.run import Run

    start = cct_fast.create_model("cct_2_3x2_32", num_classes=10)
    path = tmp_path / "start.weights.h5"
    start.save_weights(path)
    recipe = make_recipe(model="cct_2_3x2_32", dataset="digits", weights=str(path))
    run = Run(tmp_path / "run", recipe, verbose=0)
    images = tf.constant(rng.standard_normal((2, 32, 32, 3)), tf.float32)
    np.testing.assert_allclose(run.model(images), start(images), rtol=1e-5, atol=1e-6)


def test_a_run_at_another_size_than_the_model_names_starts_from_resized_weights(tmp_path, rng):
    """As the ImageNet-384 fine-tune trains cct_14_7x2_224 at 384 px: the model is built at
    ``img_size``, the checkpoint's positional embedding resized to its token grid (as
    create_model does), and the run folder evaluates at that size."""
    import cct_fast
    from cct_fast.core.layers import resize_positional_embedding
    from cct_fast.train.run import Run

    start = cct_fast.create_model("cct_2_3x2_32", num_classes=10)
    path = tmp_path / "start.weights.h5"
    start.save_weights(path)
    recipe = make_recipe(
        model="cct_2_3x2_32", dataset="digits", img_size=48, weights=str(path), epochs=1,
        batch_size=64, train_images=128,
    )  # fmt: skip
    run = Run(tmp_path / "run", recipe, verbose=0)
    assert run.model.config.image_size == (48, 48)
    embedding = [w for w in start.weights if "positional_embedding" in w.path][0]
    grown = [w for w in run.model.weights if "positional_embedding" in w.path][0]
    assert tuple(grown.shape) == (1, 144, 128)  # 48 px through two stride-2 pools: 12 x 12
    np.testing.assert_allclose(grown, resize_positional_embedding(embedding, 12), rtol=1e-6)
    run.train()
    batch = next(iter(run.epoch_batches(0)))[0]
    assert tuple(batch.shape[1:]) == (48, 48, 3)
    result = cct_fast.train.evaluate(tmp_path / "run", "digits")
    assert result["accuracy"] == pytest.approx(run.history[-1]["test_accuracy"])
    with pytest.raises(RecipeError, match="img_size=48 .* is a text model"):
        make_recipe(model="text_cct_2", dataset="fortunes", img_size=48)


def test_the_flowers_fine_tune_keeps_the_step_schedule_its_file_leaves_in_place():
    """configs/finetuned/cct_14-7x2_flowers102.yml sets no sched: the official train.py ran
    its default, timm's step schedule (30 epochs, x0.1), with no cooldown."""
    with warnings.catch_warnings(record=True):
        recipe = make_recipe("cct_14-7x2_flowers102")
    assert (recipe.schedule, recipe.decay_epochs, recipe.decay_rate) == ("step", 30, 0.1)
    assert (recipe.model, recipe.weights, recipe.img_size) == ("cct_14_7x2_384", "official", 384)
    assert (recipe.batch_size, recipe.lr, recipe.min_lr) == (20, 5e-5, 1e-8)
    assert recipe.total_epochs == 300


def test_the_step_schedule_is_timms_per_epoch():
    recipe = make_recipe(
        model="cct_2_3x2_32", dataset="digits", schedule="step", epochs=90, warmup_epochs=2,
        warmup_lr=1e-6, lr=1e-3, lr_batch_size=64, batch_size=64, decay_epochs=30,
    )  # fmt: skip
    rate = _learning_rate_at(recipe, steps_per_epoch=10)

    assert rate(0) == pytest.approx(1e-6) and rate(9) == pytest.approx(1e-6)  # per epoch
    assert rate(10) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    assert rate(20) == pytest.approx(1e-3) and rate(299) == pytest.approx(1e-3)
    assert rate(300) == pytest.approx(1e-4) and rate(600) == pytest.approx(1e-5)
    assert recipe.total_epochs == 90  # no cooldown after a step schedule


def test_a_recipe_file_of_cct_fast_settings_is_not_taken_for_an_official_config(tmp_path):
    """Names both use (lr, epochs, interpolation, img_size ...) mean the same; only a setting
    of the official train.py alone makes a file an official config."""
    path = tmp_path / "mine.json"
    path.write_text(
        '{"model": "cct_2_3x2_32", "dataset": "digits", "lr": 1e-3, "interpolation": '
        '"bicubic", "crop_pct": 0.875, "label_smoothing": 0.2}'
    )
    recipe = make_recipe(path)
    assert (recipe.interpolation, recipe.crop_pct, recipe.label_smoothing) == (
        "bicubic",
        0.875,
        0.2,
    )


def test_each_official_config_is_on_the_card_of_the_model_it_trains():
    trains = {
        file: recipe_settings(values, file)[0]["model"]
        for file, values in OFFICIAL_CONFIGS.items()
        if "model" in values
    }
    assert len(trains) == 10
    assert {file: card.name for card in CARDS.values() for file in card.configs} == trains
