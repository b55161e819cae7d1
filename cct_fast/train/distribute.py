"""Training on more than one device or machine, through ``tf.distribute``.

``mirrored``: ``MirroredStrategy`` over every local GPU or, on a machine without one, every
logical CPU device (one, unless ``tf.config.set_logical_device_configuration`` split the CPU,
as the tests do). ``multiworker``: ``MultiWorkerMirroredStrategy``, the cluster read from
``TF_CONFIG``; every worker runs the same command, and the run folder must be one that all
of them read (a shared file system), since only the chief writes it.

The recipe's ``batch_size`` is the global batch: each of N replicas takes ``batch_size / N``
of every batch, Keras averages the loss over the global batch, and the learning rate scales
with the global batch as on one device. So a run computes the same steps on any number of
devices (to float rounding), and a run started on one device can resume on several. Dropout
and stochastic depth draw per replica
(:class:`cct_fast.core.layers.replica_dropout.ReplicaSeedGenerator`).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from cct_fast.errors import RunError

STRATEGIES = ("mirrored", "multiworker")


def make_strategy(name: str = "") -> tf.distribute.Strategy:
    """The strategy ``name`` asks for; ``""`` is TensorFlow's default (one device)."""
    if not name:
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise RunError(f"distribute must be one of {', '.join(STRATEGIES)} (or none), got {name!r}.")


def _check_tf_config():
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise RunError(
            "distribute='multiworker' reads its cluster from the TF_CONFIG environment "
            'variable, which is not set: e.g. {"cluster": {"worker": ["host1:port", '
            '"host2:port"]}, "task": {"type": "worker", "index": 0}} on the first worker.'
        )
    try:
        config = json.loads(text)
        kind, index = config["task"]["type"], config["task"]["index"]
        tasks = config["cluster"][kind]
    except (ValueError, KeyError, TypeError) as error:
        raise RunError(
            f"TF_CONFIG must be JSON with 'cluster' and 'task' ({{'type', 'index'}}); "
            f"reading it failed at {error!r}."
        ) from None
    if not isinstance(tasks, list) or not isinstance(index, int) or not 0 <= index < len(tasks):
        raise RunError(
            f"TF_CONFIG's task is {kind} {index!r}, but its cluster lists "
            f"{len(tasks) if isinstance(tasks, list) else 'no list of'} {kind} address(es): "
            "the index counts from 0 within that list."
        )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the worker that writes the run folder: the only one, the ``chief`` task, or
    worker 0 of a cluster without a chief (TensorFlow's own rule, ``should_checkpoint``)."""
    return strategy.extended.should_checkpoint


def check_batch(strategy: tf.distribute.Strategy, batch_size: int):
    """The global batch must split evenly, or replicas would train on unequal shares."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise RunError(
            f"batch_size {batch_size} is the global batch and must split evenly over the "
            f"{replicas} replicas; choose a multiple of {replicas}."
        )
