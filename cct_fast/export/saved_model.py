"""TensorFlow SavedModel export for TF Serving: raw text in, class probabilities out.

The folder holds one serving signature, ``serve``. For a text model it takes a batch of
strings and tokenizes them inside the graph with the run's
:class:`~cct_fast.data.text_encoder.TextEncoder` (tensorflow-text ops, so a loader imports
``tensorflow_text`` first); for an image model it takes float32 NHWC images as the model
does. Both return ``{"probabilities": (batch, classes)}``. The folder is written beside its
target, loaded back with ``tf.saved_model.load`` in a fresh Python process and compared with
the Keras model, and only then moved into place: a failed export leaves nothing.

    to_saved_model(run.model, "served/fortunes", encoder=run.encoder)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np

from cct_fast.base.compare import relative_error
from cct_fast.core.text_model import TextCCT
from cct_fast.errors import ExportError
from cct_fast.export import examples

SIGNATURE = "serve"
OUTPUT = "probabilities"
TOLERANCE = 1e-5  # relative error of the reloaded folder's probabilities against Keras'
_CHECK_TEXTS = ["The compiler segfaulted again.", "Beam me up, Scotty.", "", "42"]

# Run in a fresh process: load the folder and write its probabilities for the inputs given.
_RELOAD = """
import sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)
folder, inputs, output = sys.argv[1:4]
served = tf.saved_model.load(folder)
if inputs.endswith(".json"):
    import json
    batch = tf.constant(json.load(open(inputs)), tf.string)
else:
    batch = tf.constant(np.load(inputs))
np.save(output, served.{signature}(batch)["{output}"].numpy())
"""


def to_saved_model(model, path, encoder=None):
    """Write ``model`` as a SavedModel folder at ``path`` with the serving signature
    ``serve``, checked after reloading it in a fresh process.

    Args:
        model: a :class:`cct_fast.CCT` or :class:`cct_fast.TextCCT`.
        path: the folder to create; an existing non-empty one is refused, never written over.
        encoder: a text model's :class:`~cct_fast.data.text_encoder.TextEncoder` (a run's
            ``encoder.json``), whose vocabulary the model was trained on.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    import keras
    import tensorflow as tf

    path = Path(path)
    text = isinstance(model, TextCCT)
    if text and encoder is None:
        raise ExportError(
            f"{model.name} is a text model: give encoder= (the run's encoder.json) so that the "
            "SavedModel takes raw strings."
        )
    examples.check_encoder(model, encoder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExportError(
            f"{path} exists and is not an empty folder; a SavedModel is a folder, and the "
            "export does not write over one: remove it or choose another path."
        )

    archive = keras.export.ExportArchive()
    archive.track(model)
    if text:
        archive.track(encoder.tokenizer)  # the vocabulary goes into the folder with it
        spec = tf.TensorSpec([None], tf.string, name="texts")

        def serve(texts):
            return {OUTPUT: tf.nn.softmax(model(encoder(texts), training=False), axis=-1)}

    else:
        spec = tf.TensorSpec([None, *model.image_shape], tf.float32, name="images")

        def serve(images):
            return {OUTPUT: tf.nn.softmax(model(images, training=False), axis=-1)}

    archive.add_endpoint(SIGNATURE, tf.function(serve, input_signature=[spec]))
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        archive.write_out(str(temporary), verbose=False)
        _check_reloaded(temporary, model, encoder)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return path


def _check_reloaded(folder, model, encoder):
    """Load ``folder`` in a fresh process, as a server would, and compare its probabilities
    with the Keras model's on a few inputs."""
    import tensorflow as tf

    work = folder / "_check"  # inside the temporary folder, removed with it
    work.mkdir()
    if encoder is not None:
        inputs = work / "inputs.json"
        inputs.write_text(json.dumps(_CHECK_TEXTS))
        keras_inputs = encoder(_CHECK_TEXTS)
    else:
        height, width, channels = (side or 32 for side in model.image_shape)
        images = np.random.default_rng(0).normal(size=(3, height, width, channels))
        inputs = work / "inputs.npy"
        np.save(inputs, images.astype(np.float32))
        keras_inputs = images.astype(np.float32)
    expected = tf.nn.softmax(model(keras_inputs, training=False), axis=-1).numpy()
    output = work / "probabilities.npy"
    script = _RELOAD.format(signature=SIGNATURE, output=OUTPUT)
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(inputs), str(output)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise ExportError(
            f"The SavedModel did not load and run in a fresh process:\n{result.stderr[-2000:]}"
        )
    error = relative_error(np.load(output), expected)
    shutil.rmtree(work)
    if error > TOLERANCE:
        raise ExportError(
            f"The reloaded SavedModel's probabilities differ from the Keras model's by "
            f"{error:.2e} (relative; at most {TOLERANCE:.0e}): nothing was written."
        )
