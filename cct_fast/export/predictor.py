"""Running an exported model in ONNX Runtime on the batches the Keras model takes."""

from __future__ import annotations

import json
import os
import reprlib
import warnings

import numpy as np

from cct_fast.base.optional import require
from cct_fast.export import text_graph
from cct_fast.export.examples import TEXT_INPUTS

# A text export's metadata entry holding its vocabulary size, the ids the graph can look up.
VOCAB_SIZE_KEY = "cct_fast.vocab_size"
# An int8 export's metadata entry holding the accuracy check it passed.
INT8_CHECK_KEY = "cct_fast.int8"


def onnx_package(module):
    """One of the packages ONNX export and inference need (the ``onnx`` or ``gpu`` extra)."""
    return require(module, "ONNX export", "'cct-fast[onnx]' (or 'cct-fast[gpu]')")


class OnnxPredictor:
    """Runs an exported model in ONNX Runtime on the batches the Keras model takes: NHWC
    images, or a text model's ``(token_ids, mask)``."""

    def __init__(self, session):
        self.session = session
        specs = session.get_inputs()
        names = tuple(spec.name for spec in specs)
        self.text = names == TEXT_INPUTS
        self.raw_text = names == (text_graph.TEXTS_INPUT,)
        spec = specs[0]
        self.input_name, self.input_shape = spec.name, tuple(spec.shape)
        vocab_size = session.get_modelmeta().custom_metadata_map.get(VOCAB_SIZE_KEY)
        self.vocab_size = int(vocab_size) if vocab_size else None  # older exports lack it

    @property
    def int8_check(self):
        """The accuracy check an int8 export passed when it was written
        (:class:`~cct_fast.export.quantize.Int8Check`), or None for a float export."""
        from cct_fast.export.quantize import Int8Check

        check = self.session.get_modelmeta().custom_metadata_map.get(INT8_CHECK_KEY)
        return Int8Check(**json.loads(check)) if check else None

    @property
    def providers(self):
        """The execution providers that really run, best first."""
        return self.session.get_providers()

    def predict(self, images):
        """Logits for ``images`` (NHWC floats), a text model's ``(token_ids, mask)``, or, for a
        raw-text export, a sequence of strings; a raw-text export's probabilities are
        :meth:`predict_probabilities`."""
        if self.raw_text:
            return self.session.run([text_graph.OUTPUTS[0]], self._texts(images))[0]
        if self.text:
            return self._predict_text(images)
        images = np.asarray(images)
        if not np.issubdtype(images.dtype, np.floating):
            raise TypeError(
                f"Expected float images; got {images.dtype}. Scale them as in training, "
                "e.g. images.astype('float32') / 255.0."
            )
        expected = self.input_shape
        fixed = [d if isinstance(d, int) else None for d in expected]
        if images.ndim != len(expected) or any(
            f is not None and f != s for f, s in zip(fixed, images.shape, strict=False)
        ):
            shown = tuple(d if d is not None else "batch" for d in fixed)
            raise ValueError(f"Expected images of shape {shown} (NHWC); got {images.shape}.")
        if len(images) == 0:  # the graph's reshapes refuse no rows: what numpy gives instead
            return self.predict(np.zeros((1,) + images.shape[1:], np.float32))[:0]
        return self.session.run(None, {self.input_name: images.astype(np.float32)})[0]

    def predict_probabilities(self, texts):
        """A raw-text export's class probabilities for a sequence of strings."""
        if not self.raw_text:
            raise TypeError(
                "Only a raw-text export (to_onnx(..., encoder=...)) holds its probabilities; "
                "take the softmax of predict()'s logits."
            )
        return self.session.run([text_graph.OUTPUTS[1]], self._texts(texts))[0]

    @staticmethod
    def _texts(texts):
        if isinstance(texts, (str, bytes)) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                f"A raw-text export takes a sequence of strings; got {reprlib.repr(texts)}."
            )
        return {text_graph.TEXTS_INPUT: np.array(list(texts), dtype=object)}

    def _predict_text(self, inputs):
        seq_len = self.input_shape[1]
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise TypeError(
                f"A text model's graph takes (token_ids, mask), each (batch, {seq_len}); got "
                f"{type(inputs).__name__}. Tokenize texts with the run's TextEncoder first."
            )
        ids, mask = (np.asarray(value) for value in inputs)
        for name, value in zip(TEXT_INPUTS, (ids, mask), strict=True):
            if value.ndim != 2 or value.shape[1] != seq_len or len(value) != len(ids):
                raise ValueError(f"Expected {name} of shape (batch, {seq_len}); got {value.shape}.")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"Expected integer token ids; got {ids.dtype}.")
        if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
            raise TypeError(f"Expected a boolean (or 0/1 integer) mask; got {mask.dtype}.")
        if self.vocab_size and ids.size and not 0 <= ids.min() <= ids.max() < self.vocab_size:
            raise ValueError(
                f"The model has a vocabulary of {self.vocab_size} ids; got token ids from "
                f"{ids.min()} to {ids.max()}. Encode texts with the run's encoder.json, whose "
                "vocabulary the model was trained with."
            )
        feeds = {"token_ids": ids.astype(np.int32), "mask": mask.astype(bool)}
        return self.session.run(None, feeds)[0]


def load_onnx(
    path: str | os.PathLike,
    providers: list[str | tuple[str, dict]] | None = None,
    *,
    tf32: bool = False,
) -> OnnxPredictor:
    """Open an exported model in ONNX Runtime.

    Args:
        path: a file :func:`cct_fast.export.to_onnx` wrote.
        providers: execution providers, best first, as names or ONNX Runtime's
            ``(name, options)`` pairs; those this onnxruntime lacks are skipped with one
            warning, as ONNX Runtime itself does. Default: ``CUDAExecutionProvider`` (of the
            ``gpu`` extra), then the CPU.
        tf32: let the CUDA provider multiply float32 in TF32 (its own default). Off, a float32
            export computes in float32 and matches the Keras model to 1e-4; on, it ran 1.7x
            faster on an H200 at a relative error of about 4e-4 (``benchmarks/RESULTS.md``).
            Options given with the provider take precedence.

    Returns:
        An :class:`OnnxPredictor` whose ``predict`` takes the Keras model's NHWC batches.
    """
    ort = onnx_package("onnxruntime")
    available = ort.get_available_providers()
    if providers is None:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p if isinstance(p, str) else tuple(p) for p in providers]
    names = [p if isinstance(p, str) else p[0] for p in providers]
    usable = [p for p, name in zip(providers, names, strict=True) if name in available]
    if not usable:
        raise ValueError(
            f"None of the execution providers {names} is available; this "
            f"onnxruntime offers {available}."
        )
    if len(usable) < len(providers):
        missing = [name for name in names if name not in available]
        gpu = (
            " (install onnxruntime-gpu with CUDA 12)" if "CUDAExecutionProvider" in missing else ""
        )
        first = usable[0] if isinstance(usable[0], str) else usable[0][0]
        warnings.warn(f"{', '.join(missing)} not available{gpu}; running on {first}.", stacklevel=2)
    options = ort.SessionOptions()
    if _tokenizes(path):  # a raw-text export: onnxruntime-extensions' operators, on the CPU
        options.register_custom_ops_library(text_graph.library_path())
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=_with_tf32_choice(usable, tf32)
        )
    except Exception as error:  # ORT raises its own exception types
        if type(error).__module__.startswith("onnxruntime"):
            raise ValueError(f"{path} is not a loadable ONNX model: {error}") from None
        raise
    return OnnxPredictor(session)


def _tokenizes(path):
    """Whether the ONNX file at ``path`` uses onnxruntime-extensions' operators (a raw-text
    export); False where it cannot be read, for ONNX Runtime to say why."""
    onnx = onnx_package("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx raises protobuf's and its own errors; ORT reports them better
        return False
    return any(entry.domain == text_graph.DOMAIN for entry in model.opset_import)


def _with_tf32_choice(providers, tf32):
    """``providers`` with the CUDA provider told whether float32 may run in TF32."""
    chosen = []
    for provider in providers:
        name, options = (provider, {}) if isinstance(provider, str) else provider
        if name == "CUDAExecutionProvider":
            options = {"use_tf32": str(int(tf32)), **options}
        chosen.append((name, options) if options else name)
    return chosen
