"""``create_model``, the front door: an official name, built and, if asked, given weights.

One function per official name (``cct_fast.cct_7_3x1_32(...)``) as timm and
keras.applications offer. The names and their architectures are in
:mod:`cct_fast.core.names`.
"""

from __future__ import annotations

import os

from cct_fast.core.model import CCT
from cct_fast.core.names import is_text_model, list_models, model_config
from cct_fast.core.text_model import TextCCT
from cct_fast.errors import ConfigError
from cct_fast.weights.loading import load_weights
from cct_fast.weights.pretrained import official_weights


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    positional_embedding: str | None = None,
    weights: str | os.PathLike | None = None,
    include_top: bool = True,
    classifier_activation: str | None = None,
    jit_compile: bool = False,
    dtype=None,
    **overrides,
) -> CCT | TextCCT:
    """Build an official model by name, optionally with weights.

    Args:
        name: an official name (``cct_fast.list_models()``), e.g. ``"cct_7_3x1_32"``.
        num_classes: classes of the head, if not the official name's.
        img_size: image side or ``(height, width)``, if not the official name's; a learnable
            positional embedding loaded from a checkpoint is resized to it. Image models only:
            a text model takes ``seq_len`` (words) and ``vocab_size`` among ``overrides``.
        positional_embedding: ``"learnable"``, ``"sine"`` or ``"none"``, if not the name's.
        weights: an official PyTorch checkpoint (``.pth``/``.pt``), Keras weights
            (``.weights.h5``/``.keras``), or ``"official"`` for the official pretrained
            checkpoint of ``name`` (downloaded once; :mod:`cct_fast.weights.pretrained`). A
            checkpoint with another class count leaves the head freshly initialised, with a
            warning.
        include_top: False gives the pooled features ``(batch, embedding_dim)``.
        classifier_activation: e.g. ``"softmax"``; None gives logits.
        jit_compile: compile ``fit``/``predict`` with XLA.
        dtype: the precision, e.g. ``"mixed_bfloat16"`` (as :class:`cct_fast.CCT` takes it);
            None: Keras' global policy.
        **overrides: any other :class:`cct_fast.CCT` (or :class:`cct_fast.TextCCT`)
            argument (``implementation``, ``vocab_size``, ``seq_len``, ``kernel_size``, ...).

    Returns:
        The :class:`cct_fast.CCT` model, or :class:`cct_fast.TextCCT` for a ``text_`` name,
        built.
    """
    arguments = model_config(name)
    given = dict(
        num_classes=num_classes, img_size=img_size, positional_embedding=positional_embedding
    )
    arguments.update({key: value for key, value in given.items() if value is not None})
    arguments.update(overrides)
    arguments.setdefault("name", name)
    if is_text_model(name) and img_size is not None:
        raise ConfigError(f"{name} is a text model: give seq_len (words), not img_size.")
    model = (TextCCT if is_text_model(name) else CCT)(
        **arguments,
        include_top=include_top,
        classifier_activation=classifier_activation,
        jit_compile=jit_compile,
        dtype=dtype,
    )
    if weights == "official":
        weights = official_weights(name)
    if weights is not None:
        load_weights(model, weights)
    return model


def _model_function(name):
    def build(**kwargs):
        return create_model(name, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"``create_model({name!r}, **kwargs)``: the official {name}."
    return build


# One function per official name, as timm and keras.applications offer.
globals().update({name: _model_function(name) for name in list_models()})
__all__ = ["create_model", *list_models()]
