"""Training runs, the recipe, the datasets and the input pipeline."""

import json
import sys

import numpy as np
import pytest
import tensorflow as tf

from cct_fast import train
from cct_fast.cli import main as cli
from cct_fast.data import image_data as data
from cct_fast.data import pipeline
from cct_fast.errors import MissingDependency
from cct_fast.train.recipe import Recipe, RecipeError, make_recipe
from cct_fast.train.run_folder import read_dataset_card

from helpers import interrupted_at_epoch

# A short digits run that learns within seconds (batch 32, 1 warm-up epoch, higher peak lr).
QUICK = dict(
    model="cct_2_3x2_32",
    dataset="digits",
    train_images=800,
    batch_size=32,
    warmup_epochs=1,
    lr=4e-3,
)


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def test_default_recipe_is_the_official_cifar_one():
    recipe = make_recipe()
    assert (recipe.epochs, recipe.batch_size, recipe.learning_rate) == (300, 128, 5.5e-4)
    assert (recipe.weight_decay, recipe.warmup_epochs, recipe.warmup_lr, recipe.min_lr) == (
        0.06,
        10,
        1e-5,
        1e-5,
    )
    assert (recipe.mixup_alpha, recipe.cutmix_alpha, recipe.mixup_switch_prob) == (0.8, 1.0, 0.5)
    assert recipe.mixup_off_epoch == 175 and recipe.label_smoothing == 0.1
    assert (recipe.randaugment_magnitude, recipe.randaugment_magnitude_std) == (9, 0.5)
    assert recipe.crop_scale == (0.8, 1.0) and recipe.hflip == 0.5
    assert make_recipe(batch_size=64).learning_rate == pytest.approx(2.75e-4)  # linear scaling


def test_recipe_file_overrides_dataset_defaults_and_flags_override_the_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"lr": 1e-3, "epochs": 5, "crop_scale": [0.5, 1.0]}))
    recipe = make_recipe(path, dataset="digits", epochs=3)
    assert (recipe.lr, recipe.epochs, recipe.crop_scale) == (1e-3, 3, (0.5, 1.0))
    assert recipe.hflip == 0.0 and recipe.mixup_alpha == 0.0  # digits defaults


def test_the_model_names_image_size_is_none_in_a_recipe_as_in_create_model(tmp_path):
    """A recipe saved before cct_fast 0.4 holds 0 for it: read back, it is None again."""
    assert make_recipe().img_size is None
    assert make_recipe(img_size=48).img_size == 48
    saved = tmp_path / "recipe.json"
    saved.write_text(json.dumps({**make_recipe().to_dict(), "img_size": 0}))
    assert make_recipe(saved) == make_recipe()
    with pytest.raises(RecipeError, match=r"img_size='big'.*an integer, or null"):
        make_recipe(img_size="big")
    with pytest.raises(RecipeError, match=r"img_size=-8.*expected a value in \[1, inf\)"):
        make_recipe(img_size=-8)


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "r.json",
            '{"learning_rate_peak": 1}',
            r"Unknown recipe setting\(s\) \['learning_rate_peak'\]",
        ),
        ("r.json", '{"epochs": "many"}', r"epochs='many'.*expected an integer"),
        ("r.json", '{"crop_scale": 0.8}', "crop_scale=0.8.*expected a pair of numbers"),
        ("r.json", '{"precision": "float64"}', "precision must be one of"),
        ("r.json", '{"epochs": 3', "is not valid JSON"),
        ("r.yml", "epochs: [3", "is not valid YML"),
        ("r.json", "[1, 2]", "must hold a mapping"),
    ],
)
def test_bad_recipe_files_are_refused_and_no_run_is_started(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RecipeError, match=message):
        train.fit(out=tmp_path / "run", recipe_file=path, dataset="digits")
    assert not list((tmp_path / "run").glob("*.json"))  # nothing of a run written


def test_digits_is_a_fixed_stratified_split_of_32px_rgb(digits):
    assert digits.train.images.shape == (1437, 32, 32, 3)
    assert digits.test.images.shape == (360, 32, 32, 3)
    assert digits.train.images.dtype == np.uint8 and digits.num_classes == 10
    assert np.bincount(digits.test.labels).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    again = data.load_dataset("digits")
    assert np.array_equal(again.test.labels, digits.test.labels)
    assert 0.05 < digits.mean[0] < 0.5 and 0.1 < digits.std[0] < 0.5


def test_image_folder_dataset(tmp_path, rng):
    for split, count in (("train", 3), ("val", 2)):
        for name in ("cat", "dog"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
                (folder / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    dataset = data.load_dataset(f"folder:{tmp_path}")
    assert dataset.class_names == ["cat", "dog"] and len(dataset.train) == 6
    assert list(dataset.test.labels) == [0, 0, 1, 1]
    recipe = make_recipe(dataset=f"folder:{tmp_path}", batch_size=4)
    images, targets = next(
        iter(pipeline.training_batches(dataset.train, dataset, recipe, (32, 32), 0))
    )
    assert images.shape == (4, 32, 32, 3) and targets.shape == (4, 2)


def test_missing_datasets_give_clear_errors(tmp_path):
    with pytest.raises(data.DatasetError, match="Unknown dataset 'mnist'"):
        data.load_dataset("mnist")
    with pytest.raises(data.DatasetError, match="train/<class>/<images>"):
        data.load_dataset(f"folder:{tmp_path}")


def _epoch(digits, recipe, epoch):
    split = data.Split(digits.train.images[:128], digits.train.labels[:128])
    return [
        tuple(t.numpy() for t in batch)
        for batch in pipeline.training_batches(split, digits, recipe, (32, 32), epoch)
    ]


def test_each_epoch_draws_the_same_augmentations_in_every_run(digits):
    recipe = make_recipe(dataset="cifar10", batch_size=32)  # full recipe: RandAugment, MixUp ...
    first, again, other = (_epoch(digits, recipe, e) for e in (3, 3, 4))
    assert all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    assert not np.allclose(first[0][0], other[0][0])
    images, targets = first[0]
    assert images.shape == (32, 32, 32, 3) and np.isfinite(images).all()
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-5)
    assert targets.max() < 0.91  # mixed and smoothed, never a pure one-hot


def test_randaugment_draws_its_ops_per_image_each_with_probability_one_half(rng):
    """timm's RandAugment: 2 ops per image, each applied with probability 0.5, so a quarter
    of the images pass unchanged (Keras' RandAugment applies 2 ops to every image of a
    batch); seeded draws repeat, and values stay in 0..255."""
    from cct_fast.data.randaugment import PerImageRandAugment

    images = tf.constant(rng.uniform(0, 255, (240, 24, 24, 3)), tf.float32)
    first = PerImageRandAugment(2, (0.85, 0.95), seed=7)(images).numpy()
    again = PerImageRandAugment(2, (0.85, 0.95), seed=7)(images).numpy()
    other = PerImageRandAugment(2, (0.85, 0.95), seed=8)(images).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    unchanged = np.all(first == images.numpy(), axis=(1, 2, 3)).sum()
    assert 35 <= unchanged <= 85  # binomial(240, 1/4): mean 60, sd 6.7
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 255


def test_mixup_and_cutmix_stop_at_mixup_off_epoch(digits):
    recipe = make_recipe(dataset="cifar10", batch_size=32, mixup_off_epoch=1)
    mixed, plain = _epoch(digits, recipe, 0), _epoch(digits, recipe, 1)
    smoothed = {0.01, 0.91}  # label smoothing 0.1 over 10 classes
    assert set(np.round(plain[0][1].astype(float), 6).ravel()) == smoothed
    assert set(np.round(mixed[0][1].astype(float), 6).ravel()) != smoothed


def test_pipelines_keep_the_autotuner_off(digits):
    """With the autotuner on, Keras waited for its thread at the end of every epoch."""
    training = pipeline.training_batches(
        digits.train, digits, make_recipe(dataset="digits"), (32, 32), 0
    )
    evaluation = pipeline.evaluation_batches(digits.test, digits, (32, 32), 64)
    assert training.options().autotune.enabled is False
    assert evaluation.options().autotune.enabled is False
    assert len(list(training)) == 1437 // 64 and len(list(evaluation)) == 6  # 360 images


def test_optimizer_follows_the_recipe():
    recipe = make_recipe(model="cct_2_3x2_32", dataset="digits", epochs=10, warmup_epochs=2)
    model = train.build_model(recipe, 10)
    optimizer = train.build_optimizer(model, recipe, steps_per_epoch=5)
    schedule = optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(recipe.warmup_lr)
    assert float(schedule(10)) == pytest.approx(recipe.learning_rate)
    assert float(schedule(50)) == pytest.approx(recipe.min_lr, rel=1e-3)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert "cct_2_3x2_32/block_0/linear1/kernel" in decayed
    assert not any(p.endswith(("bias", "gamma", "beta")) or "positional" in p for p in decayed)


def test_a_short_digits_run_learns_and_writes_its_files(tmp_path):
    run = train.fit(out=tmp_path / "run", epochs=6, verbose=0, **QUICK)
    # Chance is 0.1; this fixed run reaches 0.72 at epoch 5 on the 2-core AVX-512 machine.
    assert run.best_accuracy >= 0.65
    assert [row["epoch"] for row in run.history] == [1, 2, 3, 4, 5, 6]
    for name in (
        "recipe.json",
        "checkpoint.npz",
        "best.weights.h5",
        "last.weights.h5",
        "metrics.csv",
        "curves.png",
    ):
        assert (tmp_path / "run" / name).stat().st_size > 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,learning_rate") and len(rows) == 7
    best = train.evaluate(tmp_path / "run", "digits")
    assert best["accuracy"] == pytest.approx(run.best_accuracy)


@pytest.mark.parametrize("implementation", ["fused", "custom"])
def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, implementation):
    """Also through the custom ops, whose attention dropout draws from the layers' seeds."""
    settings = dict(QUICK, train_images=192, epochs=3, verbose=0, implementation=implementation)
    whole = train.fit(out=tmp_path / "whole", **settings)

    with interrupted_at_epoch(2), pytest.raises(KeyboardInterrupt):
        train.fit(out=tmp_path / "split", **settings)
    resumed = train.fit(out=tmp_path / "split", resume=True, verbose=0)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=False):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_with_ema_decay_each_epoch_evaluates_and_saves_the_moving_average(tmp_path):
    """timm's model_ema through Keras' use_ema: training goes on from the trained weights,
    the epoch's test figures and best/last weights are the averages', and a resumed run
    (averages in its checkpoint) ends where an uninterrupted one does."""
    settings = dict(QUICK, train_images=192, epochs=3, verbose=0, ema_decay=0.9)
    whole = train.fit(out=tmp_path / "whole", **settings)
    trained = whole.model.get_weights()
    averages = [v.numpy() for v in whole.model.optimizer.variables if "average" in v.path]
    assert len(averages) == len(whole.model.trainable_variables)
    last = train.build_model(whole.recipe, 10)
    last.load_weights(tmp_path / "whole" / "last.weights.h5")
    for variable, average in zip(last.trainable_variables, averages, strict=True):
        np.testing.assert_array_equal(variable.numpy(), average)
    differ = [not np.array_equal(a, b) for a, b in zip(trained, last.get_weights(), strict=True)]
    assert sum(differ) >= len(averages) - 1  # all but the pool's gradient-free bias, maybe
    assert train.evaluate(tmp_path / "whole", "digits")["accuracy"] == pytest.approx(
        whole.best_accuracy
    )

    with interrupted_at_epoch(2), pytest.raises(KeyboardInterrupt):
        train.fit(out=tmp_path / "split", **settings)
    resumed = train.fit(out=tmp_path / "split", resume=True, verbose=0)
    for a, b in zip(trained, resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert [r["test_accuracy"] for r in resumed.history] == [
        r["test_accuracy"] for r in whole.history
    ]


def test_resume_refuses_other_settings_and_corrupt_checkpoints(tmp_path):
    folder = tmp_path / "run"
    train.fit(out=folder, epochs=1, verbose=0, **dict(QUICK, train_images=64))
    with pytest.raises(train.RunError, match="started with other settings \\(epochs 1, asked 5\\)"):
        train.fit(out=folder, resume=True, epochs=5, verbose=0)
    with pytest.raises(train.RunError, match="already holds a run"):
        train.fit(out=folder, epochs=1, verbose=0, **dict(QUICK, train_images=64))
    (folder / "checkpoint.npz").write_bytes(b"garbage")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(train.RunError, match="not a readable cct-fast run checkpoint"):
        train.fit(out=folder, resume=True, verbose=0)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    with pytest.raises(train.RunError, match="Nothing to resume"):
        train.fit(out=tmp_path / "empty", resume=True)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    recipe = Recipe(model="cct_2_3x2_32", dataset="digits")
    model = train.build_model(recipe, 10)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    train.save_checkpoint(tmp_path / "c.npz", model, recipe, [])
    other = Recipe(model="cct_4_3x2_32", dataset="digits")
    with pytest.raises(train.RunError, match="written by another recipe"):
        train.load_checkpoint(tmp_path / "c.npz", model, other)


def test_cli_train_and_evaluate(tmp_path, capsys):
    recipe = tmp_path / "quick.json"
    recipe.write_text(json.dumps(dict(QUICK, train_images=64)))
    out = tmp_path / "run"
    assert (
        cli(
            [
                "train",
                "--dataset",
                "digits",
                "--epochs",
                "2",
                "--recipe",
                str(recipe),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "best test accuracy" in printed
    # Keras' bar counts the run's epochs, though each fit call trains one
    assert "Epoch 1/2" in printed and "epoch 1/2: test accuracy" in printed
    assert cli(["evaluate", str(out), "--dataset", "digits"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert cli(["evaluate", str(out / "best.weights.h5"), "--dataset", "digits"]) == 2
    assert "say which model" in capsys.readouterr().err
    assert cli(["train", "--resume"]) == 2


def test_tensorboard_holds_each_epoch_and_the_first_augmented_batch(tmp_path):
    """``tensorboard`` writes the epoch's figures as scalars at step ``epoch`` and, after the
    first, eight images of the first augmented batch, beside metrics.csv."""
    settings = dict(QUICK, train_images=64, epochs=2, tensorboard=True)
    run = train.fit(out=tmp_path / "run", verbose=0, **settings)
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1  # one file for the run's epochs
    scalars, images = {}, []
    for event in events:
        for record in tf.compat.v1.train.summary_iterator(str(event)):
            for value in record.summary.value:
                if value.tag == "first augmented batch":
                    images.append(tf.make_ndarray(value.tensor))
                else:
                    scalars[(value.tag, record.step)] = float(tf.make_ndarray(value.tensor))
    for row in run.history:
        for key in ("train_loss", "test_loss", "test_accuracy", "learning_rate"):
            assert scalars[(key, row["epoch"])] == pytest.approx(row[key], rel=1e-6)
    assert len(images) == 1 and len(images[0]) == 2 + 8  # width, height, then 8 PNGs


def test_tensorboard_without_its_package_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # an import of it fails
    with pytest.raises(MissingDependency, match="needs the tensorboard package: pip install"):
        train.fit(out=tmp_path / "run", epochs=1, verbose=0, tensorboard=True, **QUICK)
    assert not list((tmp_path / "run").glob("*.json"))  # nothing of a run written


@pytest.mark.parametrize(
    "card",
    [
        [],
        {"dataset": "digits", "class_names": "0123456789"},
        {"dataset": "digits", "class_names": ["only"]},
        {"dataset": "digits", "class_names": ["a", 2]},
        {"dataset": "digits", "class_names": ["a", "b"], "mean": [0.5, 0.5, 0.5]},
        {"dataset": "digits", "class_names": ["a", "b"], "mean": [0.5] * 3, "std": [True] * 3},
    ],
    ids=["a list", "a text", "one class", "a number", "mean alone", "std of booleans"],
)
def test_a_dataset_card_that_no_run_writes_is_refused_by_name(tmp_path, card):
    (tmp_path / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(train.RunError, match=r"dataset.json is not what a run writes"):
        read_dataset_card(tmp_path)
    good = {"dataset": "digits", "class_names": ["a", "b"], "mean": [0.5] * 3, "std": [0.2] * 3}
    (tmp_path / "dataset.json").write_text(json.dumps(good))
    assert read_dataset_card(tmp_path) == good
