"""One worker of a two-process MultiWorkerMirroredStrategy run on this machine, for
``tests/test_distribute.py``: ``python distributed_worker.py INDEX PORT0,PORT1 OUT WEIGHTS``
trains :data:`SETTINGS` into ``OUT`` as worker ``INDEX`` and writes its final weights to
``WEIGHTS`` (an ``.npz``)."""

import contextlib
import functools
import json
import os
import sys

# A run on N replicas draws other dropout masks than one on a single device (each replica its
# own), so the runs compared with the single-device run leave the model's randomness out;
# the input pipeline's augmentations stay in.
SETTINGS = dict(
    model="cct_2_3x2_32",
    dataset="digits",
    train_images=128,
    batch_size=32,
    warmup_epochs=1,
    lr=4e-3,
    epochs=2,
    randaugment_ops=2,
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    verbose=0,
)


@contextlib.contextmanager
def without_model_randomness():
    """Runs built meanwhile have no dropout, attention dropout or stochastic depth."""
    from cct_fast.train import run_model

    original = run_model.create_model
    run_model.create_model = functools.partial(
        original, dropout=0.0, attention_dropout=0.0, stochastic_depth=0.0
    )
    try:
        yield
    finally:
        run_model.create_model = original


def main(index, ports, out, weights):
    workers = [f"localhost:{port}" for port in ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(index)}}
    )
    import numpy as np

    from cct_fast import train

    with without_model_randomness():
        run = train.fit(out=out, distribute="multiworker", **SETTINGS)
    assert run.strategy.num_replicas_in_sync == len(workers)
    np.savez(weights, *run.model.get_weights())


if __name__ == "__main__":
    main(*sys.argv[1:])
