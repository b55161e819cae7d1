"""What every export is checked on: the inputs a model takes, keyed by the exported graph's
input names, random ones for the float checks, and labelled ones for the int8 checks."""

from __future__ import annotations

import numpy as np

from cct_fast.core.text_model import TextCCT
from cct_fast.errors import ExportError

INPUT_NAME = "images"
TEXT_INPUTS = ("token_ids", "mask")


def input_names(model):
    return TEXT_INPUTS if isinstance(model, TextCCT) else (INPUT_NAME,)


def check_encoder(model, encoder):
    """A text model's raw-text export takes the encoder of its run (or none), and only a text
    model takes one."""
    if not isinstance(model, TextCCT):
        if encoder is not None:
            raise ExportError(f"{model.name} takes images: an encoder is for text models only.")
        return
    if encoder is not None and (encoder.vocab_size, encoder.seq_len) != (
        model.config.vocab_size,
        model.config.seq_len,
    ):
        raise ExportError(
            f"The encoder gives {encoder.vocab_size} ids padded to {encoder.seq_len}, and "
            f"{model.name} takes {model.config.vocab_size} ids of length "
            f"{model.config.seq_len}: they are not from the same run."
        )


def check_int8_arguments(dtype, calibration, validation, max_accuracy_drop):
    """An int8 export takes calibration inputs, labelled validation examples and the drop it
    may lose; no other export takes them."""
    if (dtype == "int8") != (calibration is not None and validation is not None):
        raise ExportError(
            "An int8 export needs calibration= (inputs to measure activation ranges on) and "
            "validation= ((inputs, labels) to check its accuracy), and only an int8 export "
            f"takes them; got dtype={dtype!r}, calibration "
            f"{'given' if calibration is not None else 'missing'}, validation "
            f"{'given' if validation is not None else 'missing'}."
        )
    check_max_drop(max_accuracy_drop)


def check_max_drop(max_accuracy_drop):
    if not 0 <= max_accuracy_drop <= 1:
        raise ExportError(
            f"max_accuracy_drop is a fraction of top-1 accuracy from 0 to 1 (0.01: one point); "
            f"got {max_accuracy_drop!r}."
        )


def check_batch_size(batch_size):
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ExportError(
            f"batch_size must be a positive integer, or None for a dynamic batch; "
            f"got {batch_size!r}."
        )


def feeds(model, inputs, what):
    """``inputs`` (images, or a text model's ``(token_ids, mask)``) keyed by the graph's
    input names, checked against the model's input shapes."""
    names = input_names(model)
    if len(names) > 1 and (not isinstance(inputs, (list, tuple)) or len(inputs) != 2):
        raise ExportError(f"{what} of a text model must be (token_ids, mask); got {inputs!r:.80}.")
    arrays = [np.asarray(array) for array in (inputs if len(names) > 1 else (inputs,))]
    if isinstance(model, TextCCT):
        expected = [(model.config.seq_len,)] * 2
        arrays = [arrays[0].astype(np.int32), arrays[1].astype(bool)]
    else:
        expected = [model.image_shape]
        arrays = [arrays[0].astype(np.float32)]
    for name, array, shape in zip(names, arrays, expected, strict=True):
        fits = array.ndim == len(shape) + 1 and all(
            side is None or side == got for side, got in zip(shape, array.shape[1:], strict=False)
        )
        if not fits or len(array) == 0 or len(array) != len(arrays[0]):
            shown = ("batch", *(side or "any" for side in shape))
            raise ExportError(f"Expected {what} '{name}' of shape {shown}; got {array.shape}.")
    return dict(zip(names, arrays, strict=True))


def labelled(model, validation):
    """``validation``, ``(inputs, labels)``, as (input name -> array, integer labels)."""
    if not isinstance(validation, (list, tuple)) or len(validation) != 2:
        raise ExportError(f"validation must be (inputs, labels); got {type(validation).__name__}.")
    inputs = feeds(model, validation[0], "validation inputs")
    labels = np.asarray(validation[1])
    count = len(next(iter(inputs.values())))
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ExportError(
            f"validation labels must be {count} integer class indices, one per input; got "
            f"{labels.dtype} of shape {labels.shape}."
        )
    return inputs, labels


def batches(inputs, size):
    """``inputs`` (input name -> array) in batches of ``size``."""
    count = len(next(iter(inputs.values())))
    return [
        {name: array[start : start + size] for name, array in inputs.items()}
        for start in range(0, count, size)
    ]


def keras_logits(model, inputs):
    """What the Keras model gives for ``inputs`` (input name -> array), batch by batch."""
    return np.concatenate(
        [
            np.asarray(model(tuple(batch.values()) if len(batch) > 1 else batch[INPUT_NAME]))
            for batch in batches(inputs, 64)
        ]
    )


def random_inputs(model, batch, rng):
    """What the float checks feed: random images, or random ids with a random number of real
    words per row (at least one) and padding after them."""
    if not isinstance(model, TextCCT):
        shape = (batch, *model.config.image_size, model.config.n_input_channels)
        return {INPUT_NAME: rng.standard_normal(shape).astype(np.float32)}
    seq_len = model.config.seq_len
    lengths = rng.integers(1, seq_len + 1, batch)
    mask = np.arange(seq_len)[None, :] < lengths[:, None]
    ids = rng.integers(0, model.config.vocab_size, (batch, seq_len)).astype(np.int32)
    ids[~mask] = model.config.padding_idx
    return dict(zip(TEXT_INPUTS, (ids, mask), strict=True))
