"""Training under tf.distribute: a mirrored run on the two logical CPUs of the suite
(tests/conftest.py) and a two-process multi-worker run compute what one device computes,
resume exactly, and draw their own dropout per replica."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from distributed_worker import SETTINGS, without_model_randomness

from cct_fast import train
from cct_fast.cli import main as cli
from cct_fast.core.layers import Dropout, DropPath

from helpers import interrupted_at_epoch

TESTS = Path(__file__).resolve().parent


def assert_same_weights(a, b):
    # The attention pool's bias has no gradient (a softmax ignores a constant), so Adam turns
    # its rounding noise into steps of up to lr: 1e-5 is 0.25 % of the peak lr 4e-3.
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
    """SETTINGS trained on one device, without the model's randomness."""
    with without_model_randomness():
        return train.fit(out=tmp_path_factory.mktemp("single") / "run", **SETTINGS)


def test_the_suite_has_two_logical_cpus_to_mirror_on():
    strategy = train.distribute.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2


def test_each_replica_draws_its_own_dropout_and_one_device_draws_as_keras():
    strategy = train.distribute.make_strategy("mirrored")
    with strategy.scope():
        dropout, drop_path = Dropout(0.5, seed=3), DropPath(0.5, seed=4)

    @tf.function
    def draw(x):
        return dropout(x, training=True), drop_path(x, training=True)

    masks = strategy.run(draw, args=(tf.ones((64, 8)),))
    for per_replica in masks:
        first, second = strategy.experimental_local_results(per_replica)
        assert not np.array_equal(first.numpy(), second.numpy())
    x = tf.ones((64, 8))
    np.testing.assert_array_equal(
        Dropout(0.5, seed=3)(x, training=True), keras.layers.Dropout(0.5, seed=3)(x, training=True)
    )


def test_mirrored_run_ends_with_the_weights_of_the_single_device_run(tmp_path, single_device_run):
    """Same global batch, RandAugment, MixUp and CutMix on: the two replicas' steps are the
    single device's step, and the augmentations draw the same (Keras' first-batch pull is
    skipped, EncoderClassifier._maybe_symbolic_build)."""
    with without_model_randomness():
        mirrored = train.fit(out=tmp_path / "run", distribute="mirrored", **SETTINGS)
    assert mirrored.strategy.num_replicas_in_sync == 2
    assert [r["train_loss"] for r in mirrored.history] == pytest.approx(
        [r["train_loss"] for r in single_device_run.history], rel=1e-5
    )
    assert_same_weights(mirrored.model, single_device_run.model)


def test_resumed_mirrored_run_equals_an_uninterrupted_one(tmp_path):
    """With dropout drawn per replica, through the custom ops, started from the CLI."""
    settings = dict(SETTINGS, epochs=2, implementation="custom")
    whole = train.fit(out=tmp_path / "whole", distribute="mirrored", **settings)

    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({k: v for k, v in settings.items() if k != "verbose"}))
    split = tmp_path / "split"
    command = ["train", "--recipe", str(recipe), "--distribute", "mirrored", "--out", str(split)]
    with interrupted_at_epoch(1):
        assert cli(command) == 130
    resumed = train.fit(out=split, resume=True, distribute="mirrored", verbose=0)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_worker_run_ends_with_the_weights_of_the_single_device_run(tmp_path, single_device_run):
    """Two processes on this machine, one replica each, from TF_CONFIG; only worker 0 (the
    chief) writes the run folder."""
    ports = ",".join(map(str, _free_ports(2)))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "distributed_worker.py"),
                str(index),
                ports,
                str(tmp_path / "run"),
                str(tmp_path / f"worker{index}.npz"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]
    for index in range(2):
        with np.load(tmp_path / f"worker{index}.npz") as weights:
            got = [weights[f"arr_{i}"] for i in range(len(weights.files))]
        for x, y in zip(single_device_run.model.get_weights(), got, strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + SETTINGS["epochs"]
    assert float(rows[-1].split(",")[2]) == pytest.approx(
        single_device_run.history[-1]["train_loss"], rel=1e-5
    )


def test_bad_distribution_settings_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(train.RunError, match="reads its cluster from the TF_CONFIG"):
        train.fit(out=tmp_path / "a", distribute="multiworker", **SETTINGS)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}}')
    with pytest.raises(train.RunError, match="TF_CONFIG must be JSON with 'cluster' and 'task'"):
        train.fit(out=tmp_path / "b", distribute="multiworker", **SETTINGS)
    for task, message in (
        ('{"type": "worker", "index": 2}', r"task is worker 2, but its cluster lists 1 worker"),
        ('{"type": "worker", "index": "0"}', r"task is worker '0'"),
        ('{"type": "chief", "index": 0}', r"reading it failed at KeyError\('chief'\)"),
    ):
        monkeypatch.setenv(
            "TF_CONFIG", f'{{"cluster": {{"worker": ["localhost:1"]}}, "task": {task}}}'
        )
        with pytest.raises(train.RunError, match=message):
            train.fit(out=tmp_path / "b", distribute="multiworker", **SETTINGS)
    with pytest.raises(train.RunError, match="distribute must be one of mirrored, multiworker"):
        train.fit(out=tmp_path / "c", distribute="parameter_server", **SETTINGS)
    with pytest.raises(train.RunError, match="batch_size 33 is the global batch.*2 replicas"):
        train.fit(out=tmp_path / "d", distribute="mirrored", **dict(SETTINGS, batch_size=33))
    assert not any((tmp_path / name / "checkpoint.npz").exists() for name in "abcd")
