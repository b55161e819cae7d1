import os
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so that tf.distribute's MirroredStrategy has two replicas to mirror
# on a machine without GPUs (tests/test_distribute.py). TensorFlow takes this only before its
# first op: here, before any test module is collected. Ops go to CPU:0 as before.
LOGICAL_CPUS = 2
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS,
)

# The suite's random inputs come from this seed, so a case near its tolerance passes or fails
# the same way every run. CCT_FAST_TEST_SEED=N explores other inputs.
SEED = int(os.environ.get("CCT_FAST_TEST_SEED", "20261125"))


def pytest_report_header():
    return f"random inputs: CCT_FAST_TEST_SEED={SEED}"


@pytest.fixture
def rng(request):
    """A generator of the suite's seed and the test's own id, so that tests do not share a
    stream and one test's inputs do not change when another is added."""
    test = zlib.crc32(request.node.nodeid.encode())
    print(f"random inputs: CCT_FAST_TEST_SEED={SEED}, test stream {test}")
    return np.random.default_rng([SEED, test])


@pytest.fixture(scope="session")
def official():
    """The official PyTorch architecture (:mod:`cct_fast.testing.official_torch`): ``model``,
    ``trained_like``, ``state_dict``, ``logits`` and ``torch`` itself. Skips only the tests that
    ask for it where torch, einops or vit-pytorch is missing."""
    import types

    from cct_fast.testing import official_torch

    torch = pytest.importorskip("torch")
    if official_torch.official_module() is None:
        pytest.skip("einops or vit-pytorch is not installed (pip install --no-deps vit-pytorch)")
    return types.SimpleNamespace(
        model=official_torch.official_model,
        trained_like=official_torch.trained_like,
        state_dict=official_torch.state_dict_numpy,
        logits=official_torch.official_logits,
        torch=torch,
    )


@pytest.fixture(scope="session")
def topic_run(tmp_path_factory):
    """A finished text_cct_2 run on three topics (tests/helpers.py ``topic_csv``), and its
    dataset name: the text tests read it, none may change it."""
    from cct_fast import train

    from helpers import QUICK_TEXT, topic_csv

    folder = tmp_path_factory.mktemp("text")
    dataset = topic_csv(folder / "topics.csv")
    run = train.fit(out=folder / "run", dataset=dataset, verbose=0, **QUICK_TEXT)
    return run, dataset


# Enough digits training for a model far from chance (about 90 % on the test split).
DIGITS = dict(
    model="cct_2_3x2_32",
    dataset="digits",
    train_images=800,
    epochs=8,
    batch_size=32,
    warmup_epochs=1,
    lr=4e-3,
)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A short digits run far from chance: its folder, the loaded run, 128 of its training
    images and its test split, as the model takes them (the int8 exports' tests read it)."""
    from cct_fast import train
    from cct_fast.train.evaluation import load_run, run_examples

    run = train.fit(out=tmp_path_factory.mktemp("digits") / "run", verbose=0, **DIGITS)
    trained = load_run(run.folder)
    calibration, _ = run_examples(trained, "train", limit=128)
    return run.folder, trained, calibration, run_examples(trained, "test")
