"""The TensorFlow SavedModel export: raw strings (or images) in, probabilities out, loaded back
in a fresh process as a server would load it."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast import train
from cct_fast.cli import main as cli
from cct_fast.errors import ExportError
from cct_fast.export import to_saved_model

from helpers import QUICK_TEXT, random_images, relative_error, topic_csv, trained_like

# A server's view: tensorflow, tensorflow_text and the folder, no cct_fast.
_SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text
folder, inputs = sys.argv[1:3]
served = tf.saved_model.load(folder)
batch = json.loads(inputs) if inputs.startswith("[") else np.load(inputs)
batch = tf.constant(batch, tf.string if inputs.startswith("[") else tf.float32)
print(json.dumps(served.serve(batch)["probabilities"].numpy().tolist()))
print("cct_fast" in sys.modules)
"""


def _served(folder, inputs):
    result = subprocess.run(
        [sys.executable, "-c", _SERVE, str(folder), inputs],
        capture_output=True,
        text=True,
        check=True,
    )
    probabilities, imported_cct_fast = result.stdout.strip().splitlines()[-2:]
    assert imported_cct_fast == "False"
    return np.array(json.loads(probabilities))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    return train.fit(
        out=folder / "run", dataset=topic_csv(folder / "topics.csv"), verbose=0, **QUICK_TEXT
    )


def test_a_text_run_serves_raw_strings_as_its_keras_model_computes(text_run, tmp_path, capsys):
    out = tmp_path / "served"
    assert cli(["export", str(text_run.folder), "-o", str(out), "--format", "savedmodel"]) == 0
    assert "a batch of strings -> 'probabilities'" in capsys.readouterr().out
    texts = ["a cow and a dog in the field", "", "UNSEEN words only, zzz", "the stock market"]
    served = _served(out, json.dumps(texts))
    logits = text_run.model(text_run.encoder(texts), training=False)
    expected = tf.nn.softmax(logits, axis=-1).numpy()
    assert served.shape == (4, text_run.dataset.num_classes)
    assert relative_error(served, expected) <= 1e-5
    np.testing.assert_allclose(served.sum(1), 1.0, rtol=1e-6)


def test_an_image_model_serves_float_images(tmp_path, rng):
    model = trained_like(cct_fast.create_model("cct_2_3x2_32"), rng)
    images = random_images(rng, model, batch=3)
    np.save(tmp_path / "images.npy", images)
    to_saved_model(model, tmp_path / "served")
    served = _served(tmp_path / "served", str(tmp_path / "images.npy"))
    expected = tf.nn.softmax(model(images), axis=-1).numpy()
    assert relative_error(served, expected) <= 1e-5


def test_what_cannot_be_served_is_refused_and_nothing_is_written_over(text_run, tmp_path, capsys):
    with pytest.raises(ExportError, match="text model: give encoder="):
        to_saved_model(text_run.model, tmp_path / "a")
    image_model = cct_fast.create_model("cct_2_3x2_32")
    with pytest.raises(ExportError, match="takes images: an encoder is for text models only"):
        to_saved_model(image_model, tmp_path / "b", encoder=text_run.encoder)
    other = cct_fast.create_model("text_cct_2", vocab_size=text_run.encoder.vocab_size + 1)
    with pytest.raises(ExportError, match="not from the same run"):
        to_saved_model(other, tmp_path / "c", encoder=text_run.encoder)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("a user's file")
    with pytest.raises(ExportError, match="is not an empty folder"):
        to_saved_model(image_model, kept)
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]
    argv = ["export", "cct_2_3x2_32", "-o", str(tmp_path / "d"), "--format", "savedmodel"]
    assert cli([*argv, "--fp16"]) == 2
    assert "--fp16 apply to ONNX exports only" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # no folder, no leftovers


def test_an_export_that_reloads_differently_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    from cct_fast.export import saved_model

    monkeypatch.setattr(saved_model, "TOLERANCE", -1.0)  # any difference, even none, fails
    with pytest.raises(ExportError, match="differ from the Keras model's .* nothing was written"):
        to_saved_model(cct_fast.create_model("cct_2_3x2_32"), tmp_path / "served")
    assert not list(tmp_path.iterdir())
