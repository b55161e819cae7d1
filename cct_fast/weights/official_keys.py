"""Official PyTorch state dicts -> :class:`cct_fast.CCT` and :class:`cct_fast.TextCCT` weights.

The one place that knows the official key names (``classifier.blocks.0.self_attn.qkv.weight``)
and PyTorch's layouts. It maps each key to the Keras layer that owns the weight and hands that
layer its arrays through ``load_own_variables``, the hook Keras itself uses to load weights, so
a positional embedding made for another image size is resized and a head for another class
count is skipped by the same code whether the weights came from PyTorch or from Keras.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cct_fast.core.layers import ClassifierHead, PositionalEmbedding
from cct_fast.core.text_model import TextCCT
from cct_fast.errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How PyTorch lays out a weight that Keras holds in another order."""

    to_official: object  # Keras array -> PyTorch array
    to_keras: object  # PyTorch array -> Keras array
    official_shape: object  # Keras shape -> PyTorch shape


_LAYOUTS = {
    "same": _Layout(lambda a: a, lambda a: a, lambda s: s),
    # nn.Linear (out, in); Dense (in, out)
    "linear": _Layout(lambda a: a.T, lambda a: a.T, lambda s: s[::-1]),
    # nn.Conv2d (out, in, kh, kw); Conv2D (kh, kw, in, out)
    "conv": _Layout(
        lambda a: a.transpose(3, 2, 0, 1),
        lambda a: a.transpose(2, 3, 1, 0),
        lambda s: (s[3], s[2], s[0], s[1]),
    ),
    # the text tokenizer: nn.Conv1d (out, words dim, k); Conv1D (k, words dim, out)
    "conv1d": _Layout(
        lambda a: a.transpose(2, 1, 0), lambda a: a.transpose(2, 1, 0), lambda s: s[::-1]
    ),
    # the text tokenizer as a (k, words dim) nn.Conv2d over one channel: (out, 1, k, words dim)
    "conv2d_over_words": _Layout(
        lambda a: a.transpose(2, 0, 1)[:, None],
        lambda a: a[:, 0].transpose(1, 2, 0),
        lambda s: (s[2], 1, s[0], s[1]),
    ),
}


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Where one official tensor goes: ``layer``'s variable number ``index``, written in
    ``layout`` and read in it or any of ``also_read``, told apart by their shapes."""

    layer: object
    index: int
    layout: str  # a key of _LAYOUTS
    also_read: tuple[str, ...] = ()

    @property
    def variable(self):
        return self.layer.weights[self.index]

    def to_official(self, array):
        return _LAYOUTS[self.layout].to_official(array)

    def to_keras(self, array):
        layout = self._layout_of(tuple(np.shape(array)))
        return _LAYOUTS[layout].to_keras(np.asarray(array, dtype=self.variable.dtype))

    @property
    def official_shape(self):
        return self._shape_in(self.layout)

    @property
    def official_shapes(self) -> list[tuple]:
        """The shapes a checkpoint may hold this tensor in, the written one first."""
        return [self._shape_in(layout) for layout in self._layouts]

    @property
    def _layouts(self):
        return (self.layout, *self.also_read)

    def _shape_in(self, layout):
        return tuple(_LAYOUTS[layout].official_shape(tuple(self.variable.shape)))

    def _layout_of(self, shape):
        return next((lay for lay in self._layouts if self._shape_in(lay) == shape), self.layout)

    def may_resize(self, array, allow_new_head=True) -> bool:
        """Whether a differently shaped tensor is one the owning layer adapts on load: a
        learnable positional embedding (another token count) or, with ``allow_new_head``, the
        head (another class count), with the embedding width unchanged."""
        shape = self.official_shape
        if isinstance(self.layer, PositionalEmbedding):
            return array.ndim == 3 and array.shape[::2] == shape[::2]
        if isinstance(self.layer, ClassifierHead) and allow_new_head:
            return array.ndim == len(shape) and array.shape[1:] == shape[1:]
        return False


def _linear(prefix, layer):
    slots = {f"{prefix}.weight": _Slot(layer, 0, "linear")}
    if layer.use_bias:
        slots[f"{prefix}.bias"] = _Slot(layer, 1, "same")
    return slots


def _layer_norm(prefix, layer):
    return {f"{prefix}.weight": _Slot(layer, 0, "same"), f"{prefix}.bias": _Slot(layer, 1, "same")}


def _image_front(model):
    slots = {}
    for i, conv in enumerate(model.tokenizer.convs):
        slots[f"tokenizer.conv_layers.{i}.0.weight"] = _Slot(conv, 0, "conv")
        if conv.use_bias:
            slots[f"tokenizer.conv_layers.{i}.0.bias"] = _Slot(conv, 1, "same")
    if model.positional_embedding is not None:
        slots["classifier.positional_emb"] = _Slot(model.positional_embedding, 0, "same")
    return slots


def _text_front(model):
    """The official text models: ``embedder.embeddings`` (the word table), the tokenizer's
    one convolution, and the positional table with its padding row, as long as ours. The
    convolution is a (k, 300) Conv2d over one channel in ``src/utils/tokenizer.py`` on the main
    branch, the form of the released text checkpoints, and is written so; the Conv1d form,
    ``(out, 300, k)``, of an unmerged branch ("change 2dConv to 1d") is read too."""
    slots = {"embedder.embeddings.weight": _Slot(model.word_embedding, 0, "same")}
    if model.tokenizer is not None:
        slots["tokenizer.conv_layers.0.weight"] = _Slot(
            model.tokenizer.conv, 0, "conv2d_over_words", also_read=("conv1d",)
        )
    if model.positions is not None:
        slots["classifier.positional_emb"] = _Slot(model.positions, 0, "same")
    return slots


def official_slots(model) -> dict[str, _Slot]:
    """Official state-dict key -> where it lives in ``model``, for every weight the model has."""
    slots = _text_front(model) if isinstance(model, TextCCT) else _image_front(model)
    if model.class_token is not None:
        slots["classifier.class_emb"] = _Slot(model.class_token, 0, "same")
    for i, block in enumerate(model.blocks):
        prefix = f"classifier.blocks.{i}"
        slots.update(_layer_norm(f"{prefix}.pre_norm", block.pre_norm))
        slots.update(_linear(f"{prefix}.self_attn.qkv", block.self_attn.qkv))
        slots.update(_linear(f"{prefix}.self_attn.proj", block.self_attn.proj))
        slots.update(_linear(f"{prefix}.linear1", block.linear1))
        slots.update(_layer_norm(f"{prefix}.norm1", block.norm1))
        slots.update(_linear(f"{prefix}.linear2", block.linear2))
    slots.update(_layer_norm("classifier.norm", model.norm))
    if model.sequence_pool is not None:
        slots.update(_linear("classifier.attention_pool", model.sequence_pool.attention_pool))
    if model.head is not None:
        slots.update(_linear("classifier.fc", model.head))
    return slots


def official_state_dict(model) -> dict[str, np.ndarray]:
    """``model``'s weights under the official key names and in PyTorch's layouts: what
    :func:`load_official_state_dict` reads back."""
    return {
        key: np.ascontiguousarray(slot.to_official(slot.variable.numpy()))
        for key, slot in official_slots(model).items()
    }


def _optional_keys(model) -> set[str]:
    """Keys a checkpoint may lack (the sine table is a function of its shape) or hold without
    the model using them (the head of a model built with ``include_top=False``)."""
    optional = {"classifier.fc.weight", "classifier.fc.bias"} if model.head is None else set()
    if model.config.positional_embedding == "sine":
        optional.add("classifier.positional_emb")
    return optional


def _listing(title, items, separator=", ", shown=8):
    if not items:
        return ""
    more = f"{separator}and {len(items) - shown} more" if len(items) > shown else ""
    return f"{title} ({len(items)}): {separator.join(items[:shown])}{more}"


def architecture_summary(layers, width, convolutions, classes) -> str:
    """What a set of weights holds, in the words of the model's arguments (``classes`` None:
    no head)."""
    head = "no head" if classes is None else f"a head for {classes} classes"
    # Text tokenizers and patch embeddings keep their weights elsewhere: no count to give.
    tokenizer = f" after {convolutions} tokenizer convolution(s)" if convolutions else ""
    return f"{layers} encoder layers of width {width}{tokenizer}, and {head}"


def _official_architecture(shapes: dict[str, tuple]) -> str:
    """A one-line summary of an official state dict's architecture: depth, width, tokenizer."""
    blocks = {key.split(".")[2] for key in shapes if key.startswith("classifier.blocks.")}
    convs = {key.split(".")[2] for key in shapes if key.startswith("tokenizer.conv_layers.")}
    width = shapes.get("classifier.norm.weight", ("unknown",))[0]
    head = shapes.get("classifier.fc.weight")
    return architecture_summary(len(blocks), width, len(convs), head and head[0])


def mismatch_error(
    source, model, *, expected, missing, unexpected, mismatched, held, has, kind="tensors"
) -> CheckpointError:
    """One :class:`CheckpointError` naming every difference between a set of weights and
    ``model``: the ``missing`` and ``unexpected`` names, ``mismatched`` lines with both shapes,
    and what the weights hold (``held``) against what ``model`` has (``has``), of ``expected``
    ``kind``."""
    problems = [
        _listing(f"missing {kind}", missing),
        _listing(f"unexpected {kind}", unexpected),
        _listing(f"{kind} of the wrong shape", mismatched, separator="; "),
    ]
    return CheckpointError(
        f"{source} does not fit {model.name} ({expected} {kind} expected):\n  - "
        + "\n  - ".join(p for p in problems if p)
        + f"\nIt holds {held}; {model.name} has {has}. Pick the model name (or num_layers, "
        "embedding_dim, n_conv_layers) that matches it."
    )


def check_official_state_dict(
    model, state_dict, source="state dict", allow_new_head=True
) -> dict[str, _Slot]:
    """Compare an official state dict with ``model`` by names and shapes alone (its values may be
    :class:`~cct_fast.weights.pth.DeclaredTensor` objects, data unread), and raise one
    :class:`CheckpointError` naming every missing, unexpected or mis-shaped tensor with both
    shapes. A head for another class count passes unless ``allow_new_head`` is False. Returns
    the model's slots."""
    slots = official_slots(model)
    optional = _optional_keys(model)
    missing = sorted(set(slots) - set(state_dict) - optional)
    unexpected = sorted(set(state_dict) - set(slots) - optional)
    mismatched = [
        f"{key}: checkpoint {tuple(array.shape)}, model "
        + " or ".join(str(shape) for shape in slot.official_shapes)
        for key, array in state_dict.items()
        if (slot := slots.get(key)) is not None
        and tuple(array.shape) not in slot.official_shapes
        and not slot.may_resize(array, allow_new_head)
    ]
    if missing or unexpected or mismatched:
        given_shapes = {key: tuple(value.shape) for key, value in state_dict.items()}
        model_shapes = {key: slot.official_shape for key, slot in slots.items()}
        raise mismatch_error(
            source,
            model,
            expected=len(slots),
            missing=missing,
            unexpected=unexpected,
            mismatched=mismatched,
            held=_official_architecture(given_shapes),
            has=_official_architecture(model_shapes),
        )
    return slots


def load_official_state_dict(model, state_dict, source="state dict", allow_new_head=True) -> None:
    """Load an official state dict (numpy arrays) into ``model``, after
    :func:`check_official_state_dict`: nothing is assigned unless every tensor fits. A head for
    another class count is left freshly initialised with a warning."""
    slots = check_official_state_dict(model, state_dict, source, allow_new_head)
    stores = {}
    for key, slot in slots.items():
        if key in state_dict:
            array = slot.to_keras(state_dict[key])
            stores.setdefault(id(slot.layer), (slot.layer, {}))[1][str(slot.index)] = array
    for layer, store in stores.values():
        layer.load_own_variables(store)
