"""Bad inputs to training and evaluation runs: recipe values, image folders, a second run into
the same folder, a loss that becomes NaN, interruptions and failed evaluations."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow as tf

from cct_fast import train
from cct_fast.cli import main as cli
from cct_fast.core.cards import DATASETS
from cct_fast.data import image_data as data
from cct_fast.train.recipe import RecipeError

from helpers import write_flowers_files

QUICK = dict(
    model="cct_2_3x2_32",
    dataset="digits",
    train_images=64,
    batch_size=32,
    warmup_epochs=1,
    lr=4e-3,
    verbose=0,
)


@pytest.mark.parametrize(
    "setting, value, expected",
    [
        ("lr", -1e-3, r"lr=-0.001 .*expected a value in \(0, inf\)"),
        ("lr", float("nan"), r"lr=NaN .*expected a value in \(0, inf\)"),
        ("hflip", 2.0, r"hflip=2.0 .*expected a value in \[0, 1\]"),
        ("label_smoothing", -1, r"label_smoothing=-1.0 .*expected a value in \[0, 1\)"),
        ("warmup_epochs", -4, r"warmup_epochs=-4 .*expected a value in \[0, inf\)"),
        ("train_images", -10, r"train_images=-10 .*expected a value in \[0, inf\)"),
        ("epochs", True, "epochs=True .*expected an integer"),
        (
            "crop_scale",
            [1.0, 0.5],
            r"crop_scale=\(1.0, 0.5\) .*expected values in \(0, 1\] \(low, high\)",
        ),
        ("model", "cct_77", "Unknown model name 'cct_77'. Did you mean"),
    ],
)
def test_recipe_values_out_of_range_are_refused_before_a_run_starts(
    tmp_path, setting, value, expected
):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({setting: value}))  # NaN is written as NaN, which json reads back
    with pytest.raises(RecipeError, match=expected):
        train.fit(out=tmp_path / "run", recipe_file=path, dataset="digits")
    assert not (tmp_path / "run").exists()


def _alias_bomb(levels=9, copies=9):
    """A ~300-byte YAML recipe whose crop_scale stands for copies ** levels numbers."""
    lines = ["anchors:", f"  l0: &l0 [{','.join(['1'] * copies)}]"]
    for level in range(1, levels - 1):
        lines.append(f"  l{level}: &l{level} [{','.join([f'*l{level - 1}'] * copies)}]")
    lines.append(f"crop_scale: [{','.join([f'*l{levels - 2}'] * copies)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (_alias_bomb(), "holds more than 10,000 values or nests deeper than 8 levels"),
        ('crop_scale: !!python/object/apply:os.system ["touch pwned"]', "is not valid YML"),
        ("epochs: " + "[" * 20 + "]" * 20, "nests deeper than 8 levels"),
        ("model: " + "x" * 20_000, "holds a text of 20,000 characters"),
    ],
    ids=["alias bomb", "python tag", "deep nesting", "long text"],
)
def test_hostile_yaml_recipes_are_refused_at_once(tmp_path, monkeypatch, content, message):
    """The alias bomb once hung `cct-fast train`: its refusal printed all 9^9 values."""
    recipe = tmp_path / "recipe.yml"
    recipe.write_text(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match=message) as refusal:
        train.fit(out=tmp_path / "run", recipe_file=recipe, dataset="digits")
    assert len(str(refusal.value)) < 1000
    assert not (tmp_path / "run").exists() and not (tmp_path / "pwned").exists()


def test_the_cli_refuses_the_alias_bomb_with_exit_2(tmp_path):
    recipe = tmp_path / "recipe.yml"
    recipe.write_text(_alias_bomb())
    assert len(recipe.read_text()) < 500
    result = subprocess.run(
        [sys.executable, "-m", "cct_fast.cli", "train", "--recipe", str(recipe)]
        + ["--dataset", "digits", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "holds more than 10,000 values" in result.stderr and len(result.stderr) < 2000
    assert not (tmp_path / "run").exists()


def test_a_loss_that_becomes_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch
):
    real_batches = train.Run.epoch_batches

    def poisoned_in_epoch_2(self, epoch):
        batches = real_batches(self, epoch)
        return batches.map(lambda x, y: (x * np.nan, y)) if epoch == 1 else batches

    monkeypatch.setattr(train.Run, "epoch_batches", poisoned_in_epoch_2)
    folder = tmp_path / "run"
    with pytest.raises(
        train.RunError,
        match=r"training loss became nan in epoch 2: the run "
        r"stopped, and .*checkpoint.npz keeps the run after "
        r"epoch 1, its last good one. Lower the learning rate",
    ):
        train.fit(out=folder, epochs=3, **QUICK)
    with np.load(folder / "checkpoint.npz") as saved:
        assert len(json.loads(saved["state"].tobytes())["history"]) == 1
        assert all(np.isfinite(saved[key]).all() for key in saved.files if key != "state")
    assert len((folder / "metrics.csv").read_text().splitlines()) == 2


_HOLD_THE_FOLDER = textwrap.dedent("""
    import sys, time
    from cct_fast.base.files import folder_lock
    with folder_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
""")


def test_a_second_run_into_the_same_folder_is_refused_until_the_first_process_dies(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_FOLDER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            train.RunError,
            match=rf"run is in use by another process \(pid "
            rf"{holder.pid}\): another run is training",
        ):
            train.fit(out=folder, epochs=1, **QUICK)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run = train.fit(out=folder, epochs=1, **QUICK)  # the killed process's lock went with it
    assert len(run.history) == 1


def test_ctrl_c_in_the_first_epoch_does_not_promise_a_resume(tmp_path, monkeypatch, capsys):
    def interrupted(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.Run, "epoch_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.fit(out=tmp_path / "run", epochs=2, **QUICK)
    out = capsys.readouterr().out
    assert (
        "no epoch had finished, so there is nothing to resume: run the same command again" in out
        and "--resume" not in out
    )


def test_a_failed_evaluation_keeps_the_trained_epoch_and_resume_evaluates_it(tmp_path, monkeypatch):
    settings = dict(QUICK, epochs=2)
    whole = train.fit(out=tmp_path / "whole", **settings)
    real_evaluate = train.Run.test_metrics
    calls = []

    def fails_once(self):
        calls.append(1)
        if len(calls) == 2:  # the evaluation after epoch 2
            raise OSError("the test images went away")
        return real_evaluate(self)

    monkeypatch.setattr(train.Run, "test_metrics", fails_once)
    with pytest.raises(OSError, match="went away"):
        train.fit(out=tmp_path / "split", **settings)
    monkeypatch.undo()
    resumed = train.fit(out=tmp_path / "split", resume=True, verbose=0)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert resumed.history[1]["test_accuracy"] == pytest.approx(whole.history[1]["test_accuracy"])
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=False):
        np.testing.assert_array_equal(a, b)


def _png(rng, height=12, width=10):
    return tf.io.encode_png(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).numpy()


def _chunk(kind, payload):
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png_header_only(width, height):
    """A PNG that declares ``width`` x ``height`` pixels in a few dozen bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _chunk(b"IEND", b"")
    )


def _image_folder(root, rng, classes=("cat", "dog"), per_class=2, test_split="test"):
    for split in ("train", test_split):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                (root / split / name / f"{i}.png").write_bytes(_png(rng))
    return root


def test_bad_image_files_are_all_named_before_training_starts(tmp_path, rng):
    root = _image_folder(tmp_path / "images", rng)
    good = _png(rng)
    (root / "train/cat/random.png").write_bytes(bytes(rng.integers(0, 255, 500, dtype=np.uint8)))
    (root / "train/cat/cut.png").write_bytes(good[: len(good) // 2])
    (root / "train/dog/notes.jpg").write_text("this is a text file with an image's name")
    (root / "test/dog/empty.png").write_bytes(b"")
    (root / "test/cat/bomb.png").write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(data.DatasetError) as caught:
        train.fit(
            out=tmp_path / "run",
            dataset=f"folder:{root}",
            model="cct_2_3x2_32",
            epochs=1,
            verbose=0,
        )
    message = str(caught.value)
    assert message.startswith(f"5 of the 13 images under {root} cannot be used:")
    for line in [
        "test/cat/bomb.png: a PNG of 20000 x 20000 = 400,000,000 pixels, more than the limit of "
        "89,478,485 (cct_fast.data.image_files.MAX_PIXELS)",
        "test/dog/empty.png: an empty file",
        "train/cat/cut.png: a truncated PNG: the file ends before the image does",
        "train/cat/random.png: not an image TensorFlow can decode",
        "train/dog/notes.jpg: not an image TensorFlow can decode",
    ]:
        assert line in message
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_a_jpeg_with_bytes_after_its_end_is_accepted(tmp_path, rng):
    root = _image_folder(tmp_path / "images", rng)
    jpeg = tf.io.encode_jpeg(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).numpy()
    (root / "train/cat/camera.jpg").write_bytes(jpeg + b"maker notes appended by a camera")
    assert len(data.load_dataset(f"folder:{root}").train) == 5


def test_a_truncated_jpeg_is_named_without_libjpeg_lines_on_stderr(tmp_path, rng):
    """At the command's log level (2), libjpeg's "Premature end of JPEG data" reached stderr
    beside the package's own message."""
    jpeg = tf.io.encode_jpeg(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).numpy()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cct_fast.data.image_files import unusable_images\n"
            "print(unusable_images(sys.argv[1:])); print('after', file=sys.stderr)",
            str(tmp_path / "cut.jpg"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert "a truncated JPEG: the file ends before the image does" in result.stdout
    assert "JPEG" not in result.stderr and result.stderr.endswith("after\n")


def test_an_image_that_breaks_during_training_is_named(tmp_path, rng):
    root = _image_folder(tmp_path / "images", rng, per_class=16)
    dataset = data.load_dataset(f"folder:{root}", image_size=32)
    (root / "train/dog/3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # after the check
    recipe = train.make_recipe(
        model="cct_2_3x2_32", dataset=f"folder:{root}", batch_size=8, epochs=1
    )
    run = train.Run(tmp_path / "run", recipe, verbose=0, dataset=dataset)
    with pytest.raises(data.DatasetError, match=r"cannot decode 1 image\(s\): .*train/dog/3.png"):
        run.train()


def test_folder_statistics_are_those_of_the_images_at_the_training_size(tmp_path, rng):
    root = _image_folder(tmp_path / "images", rng, per_class=3)
    side = 16
    dataset = data.load_dataset(f"folder:{root}", image_size=side)
    resized = (
        np.stack(
            [
                tf.image.resize(tf.io.decode_png(open(p, "rb").read()), (side, side))
                for p in dataset.train.images
            ]
        ).reshape(-1, 3)
        / 255.0
    )
    np.testing.assert_allclose(dataset.mean, resized.mean(0), atol=6e-5)
    np.testing.assert_allclose(dataset.std, resized.std(0), atol=6e-5)


def test_an_image_folder_listed_before_tensorflow_trains_with_its_measured_statistics(
    tmp_path, rng
):
    """The command line lists and checks a folder before TensorFlow starts and hands the
    listing to fit, which measures its statistics: the run's must be a full load's."""
    root = _image_folder(tmp_path / "images", rng, per_class=3)
    spec = f"folder:{root}"
    listed = data.load_dataset(spec, measure=False)
    assert listed.mean is None and listed.std is None and len(listed.train) == 6
    loaded = data.load_dataset(spec, image_size=32)
    measured = data.measured(listed, 32)
    assert (measured.mean, measured.std) == (loaded.mean, loaded.std)
    assert measured.train.images == loaded.train.images
    out = tmp_path / "run"
    argv = ["train", "--model", "cct_2_3x2_32", "--dataset", spec, "--epochs", "1"]
    assert cli([*argv, "--batch-size", "4", "--out", str(out)]) == 0
    card = json.loads((out / "dataset.json").read_text())
    assert (card["mean"], card["std"]) == (list(loaded.mean), list(loaded.std))


_PEAK_MEMORY_OF_STATISTICS = textwrap.dedent("""
    import resource, sys
    from cct_fast.data import image_data as data
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data.load_dataset("folder:" + sys.argv[1], image_size=32)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


def _python_script(script, folder):
    """``script`` in a fresh interpreter on ``folder``, which must exit 0. The scripts read
    their own peak memory (VmHWM in /proc/self/status: ru_maxrss would carry this process's)."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_folder_statistics_of_large_photos_take_bounded_memory(tmp_path):
    """Eight 3-megapixel photos: the statistics once took 1.7 GB for them (all decoded at full
    size into float64); one at a time at training size they take a few tens of MB."""
    root = tmp_path / "photos"
    gradient = np.linspace(0, 255, 2048 * 1536 * 3).reshape(1536, 2048, 3).astype(np.uint8)
    for split in ("train", "test"):
        (root / split / "view").mkdir(parents=True)
    photo = tf.io.encode_jpeg(gradient).numpy()
    for i in range(8):
        (root / "train/view" / f"{i}.jpg").write_bytes(photo)
    (root / "test/view/0.jpg").write_bytes(photo)
    result = _python_script(_PEAK_MEMORY_OF_STATISTICS, root)
    assert int(result.stdout.split()[-1]) < 300  # MB above the peak after import


def test_class_folders_must_match_and_hold_images(tmp_path, rng):
    root = _image_folder(tmp_path / "images", rng)
    (root / "train/bird").mkdir()
    with pytest.raises(
        data.DatasetError,
        match=r"Class folder\(s\) bird under .*train hold no "
        r"images .*remove the empty ones",
    ):
        data.load_dataset(f"folder:{root}")
    (root / "train/bird").rmdir()
    (root / "test/fish").mkdir()
    (root / "test/fish/0.png").write_bytes(_png(rng))
    with pytest.raises(
        data.DatasetError,
        match=r"test has class folders that .*train lacks: "
        r"fish\. A model cannot learn a class it never sees",
    ):
        data.load_dataset(f"folder:{root}")


def test_a_folder_path_may_start_with_a_tilde(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _image_folder(tmp_path / "flowers", rng, test_split="val")
    dataset = data.load_dataset("folder:~/flowers")
    assert dataset.class_names == ["cat", "dog"] and len(dataset.test) == 4


def test_evaluate_refuses_data_with_other_classes_and_names_missing_sources(tmp_path, rng, capsys):
    folder = tmp_path / "run"
    train.fit(out=folder, epochs=1, **QUICK)
    root = _image_folder(tmp_path / "images", rng, classes=("a", "b", "c", "d", "e"))
    assert cli(["evaluate", str(folder), "--dataset", f"folder:{root}"]) == 2
    error = capsys.readouterr().err
    assert "Cannot evaluate" in error and "(5 classes)" in error
    assert (
        "It holds 2 encoder layers of width 128 after 2 tokenizer convolution(s), and a head "
        "for 10 classes; cct_2_3x2_32 has 2 encoder layers" in error
    )
    assert "a head for 5 classes" in error and "test accuracy" not in error
    assert cli(["evaluate", str(tmp_path / "nonexistent"), "--dataset", "digits"]) == 2
    assert (
        "nonexistent does not exist: pass a run folder or a weights file" in capsys.readouterr().err
    )


def test_imagenet_reads_its_folders_with_the_official_statistics(tmp_path, rng):
    """ImageNet's layout (train/<wnid>/, val/<wnid>/) and the official configs' mean and std,
    not statistics measured on the images."""
    root = _image_folder(
        tmp_path / "ImageNet", rng, classes=("n01440764", "n01443537"), test_split="val"
    )
    dataset = data.load_dataset(f"imagenet:{root}", image_size=32)
    assert dataset.class_names == ["n01440764", "n01443537"]
    assert (len(dataset.train), len(dataset.test)) == (4, 4)
    assert (dataset.mean, dataset.std) == (DATASETS["imagenet"].mean, DATASETS["imagenet"].std)
    assert dataset.name == f"imagenet:{root}"
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load_dataset(f"imagenet:{tmp_path / 'elsewhere'}")
    with pytest.raises(data.DatasetError, match=r"'imagenet:PATH' \(ImageNet's train/<wnid>/"):
        data.load_dataset("imagenet")  # as an official config names it: the folder is needed


def test_flowers102_reads_the_published_files_and_split(tmp_path, rng):
    root = write_flowers_files(tmp_path / "flowers", rng)
    dataset = data.load_dataset(f"flowers102:{root}", image_size=32)
    flowers = DATASETS["flowers102"]
    assert len(dataset.class_names) == 102 and (dataset.mean, dataset.std) == (
        flowers.mean,
        flowers.std,
    )
    assert [p.rsplit("/", 1)[1] for p in dataset.train.images] == [
        "image_00001.jpg",
        "image_00005.jpg",
        "image_00009.jpg",
    ]
    np.testing.assert_array_equal(dataset.train.labels, [0, 1, 101])
    np.testing.assert_array_equal(dataset.test.labels, [0, 1, 101])  # the "valid" split
    final = data.load_dataset(f"flowers102-test:{root}")
    np.testing.assert_array_equal(final.test.labels, [0, 0, 1, 1, 101, 101])
    (root / "setid.mat").unlink()
    with pytest.raises(data.DatasetError, match=r"lacks .*setid.mat: download 102flowers.tgz"):
        data.load_dataset(f"flowers102:{root}")


def test_a_flowers_run_trains_on_train_and_evaluates_on_valid(tmp_path, rng):
    root = write_flowers_files(tmp_path / "flowers", rng)
    run = train.fit(
        out=tmp_path / "run",
        model="cct_2_3x2_32",
        dataset=f"flowers102:{root}",
        epochs=1,
        batch_size=3,
        verbose=0,
    )
    assert len(run.history) == 1 and run.model.config.num_classes == 102
    assert run.dataset.test.images[0].endswith("image_00002.jpg")  # evaluated on "valid"


def test_flowers102_refuses_labels_and_split_ids_out_of_range(tmp_path, rng):
    from scipy.io import savemat

    root = write_flowers_files(tmp_path / "flowers", rng)
    savemat(root / "imagelabels.mat", {"labels": [[1] * 11 + [103]]})
    with pytest.raises(data.DatasetError, match=r"labels must be 1..102 and split ids 1..12"):
        data.load_dataset(f"flowers102:{root}")
    savemat(root / "imagelabels.mat", {"labels": [[1] * 12]})
    savemat(root / "setid.mat", {"trnid": [[13]], "valid": [[2]], "tstid": [[3]]})
    with pytest.raises(data.DatasetError, match=r"labels must be 1..102 and split ids 1..12"):
        data.load_dataset(f"flowers102:{root}")


def _saved_checkpoint(folder):
    """A real checkpoint.npz of a small model, the model, its recipe and the file's entries."""
    from cct_fast.train.recipe import Recipe

    recipe = Recipe(model="cct_2_3x2_32", dataset="digits")
    model = train.build_model(recipe, 10)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    path = folder / "checkpoint.npz"
    train.save_checkpoint(path, model, recipe, [])
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    return path, model, recipe, entries


def _npy_header_only(shape, descr="<f4"):
    """A .npy entry whose header declares ``shape`` and whose data is a few bytes."""
    stream = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + bytes(16)


@pytest.mark.parametrize(
    "replace, message",
    [
        ({"*/head/kernel.npy": _npy_header_only((10**11,))}, r"wrong dtypes or shapes"),
        ({"extra.npy": _npy_header_only((10**11,))}, r"unexpected \['extra'\]"),
        ({"state.npy": _npy_header_only((10**11,), "|u1")}, "declares 100,0.* more than"),
        ({"state.npy": None}, "holds no run state"),
        ({"*/head/bias.npy": b"\x93NUMPY\x09\x00"}, "not a readable cct-fast run checkpoint"),
    ],
    ids=["huge known array", "huge extra array", "huge state", "no state", "bad npy version"],
)
def test_a_crafted_checkpoint_is_refused_from_its_headers(tmp_path, replace, message):
    """Names, dtypes, shapes and the declared total are checked before any data is read:
    a 10^11-element header once ended in numpy's raw 373 GiB allocation error."""
    path, model, recipe, entries = _saved_checkpoint(tmp_path)
    # "*/head/kernel.npy": the model's own entry of that name.
    replace = {
        next(e for e in entries if e.endswith(name[1:])) if name[0] == "*" else name: data
        for name, data in replace.items()
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in {**entries, **replace}.items():
            if data is not None:
                archive.writestr(name, data)
    before = [v.numpy() for v in model.variables]
    with pytest.raises(train.RunError, match=message):
        train.load_checkpoint(path, model, recipe)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables, strict=True))


def test_a_checkpoint_holding_nan_resumes_with_a_warning_naming_it(tmp_path):
    """As weight files do: the run goes on, and says its model will compute NaN."""
    path, model, recipe, entries = _saved_checkpoint(tmp_path)
    key = next(name for name in entries if name.endswith("/head/kernel.npy"))
    stream = io.BytesIO()
    np.save(stream, np.full(np.load(io.BytesIO(entries[key])).shape, np.nan, np.float32))
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in {**entries, key: stream.getvalue()}.items():
            archive.writestr(name, data)
    with pytest.warns(UserWarning, match=r"NaN or Inf values in 1 tensor\(s\): model/.*head"):
        assert train.load_checkpoint(path, model, recipe) == []
    assert np.isnan(model.head.kernel.numpy()).all()


_PEAK_MEMORY_OF_A_BOMBED_CHECKPOINT = textwrap.dedent("""
    import io, sys, zipfile
    from pathlib import Path
    import numpy as np
    from cct_fast import train
    from cct_fast.train.recipe import Recipe

    def peak_mb():
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) // 1024

    recipe = Recipe(model="cct_2_3x2_32", dataset="digits")
    model = train.build_model(recipe, 10)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    path = Path(sys.argv[1]) / "checkpoint.npz"
    train.save_checkpoint(path, model, recipe, [])
    # 512 MiB of zeros, deflated to half a megabyte, appended as one more array.
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb.npy", "w", force_zip64=True) as entry:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f4", "fortran_order": False, "shape": (2**27,)}
            )
            entry.write(header.getvalue())
            for _ in range(32):
                entry.write(bytes(16 * 2**20))
    before = peak_mb()
    try:
        train.load_checkpoint(path, model, recipe)
    except train.RunError as error:
        print("refused:", str(error).split(":")[1][:60])
    print(path.stat().st_size // 2**20, peak_mb() - before)
""")


def test_a_checkpoint_with_a_deflated_bomb_is_refused_without_reading_it(tmp_path):
    """The bomb once was read whole (and 3 GiB of it took 3.96 GB and 225 s) before the
    names were compared."""
    result = _python_script(_PEAK_MEMORY_OF_A_BOMBED_CHECKPOINT, tmp_path)
    refusal, sizes = result.stdout.strip().splitlines()[-2:]
    assert "unexpected ['bomb']" in refusal
    file_mb, peak_growth_mb = map(int, sizes.split())
    assert file_mb < 20 and peak_growth_mb < 50
