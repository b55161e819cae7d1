"""The official model names, each bound to the architecture the official code gives it.

The table mirrors ``src/cct.py``, ``src/cvt.py`` and ``src/vit.py`` of
SHI-Labs/Compact-Transformers: a name is ``{family}_{layers}_{kernel}x{conv layers}_{image
size}`` (CCT) or ``{family}_{layers}_{patch}_{image size}`` (CVT, ViT-Lite), with ``_sine``
for the sine positional embedding and ``_c100``/``_fl`` for the CIFAR-100 / Flowers-102 heads.
"""

from __future__ import annotations

import difflib
import fnmatch

from cct_fast.errors import ConfigError

# Depth, heads, MLP ratio and width per size, as the official cct_N / cvt_N / vit_N helpers.
_SIZES = {
    2: dict(num_layers=2, num_heads=2, mlp_ratio=1, embedding_dim=128),
    4: dict(num_layers=4, num_heads=2, mlp_ratio=1, embedding_dim=128),
    6: dict(num_layers=6, num_heads=4, mlp_ratio=2, embedding_dim=256),
    7: dict(num_layers=7, num_heads=4, mlp_ratio=2, embedding_dim=256),
    14: dict(num_layers=14, num_heads=6, mlp_ratio=3, embedding_dim=384),
}


def _cct(size, kernel, conv_layers, img_size, num_classes, positional_embedding="learnable"):
    return dict(
        _SIZES[size],
        tokenizer="convolutional",
        kernel_size=kernel,
        n_conv_layers=conv_layers,
        img_size=img_size,
        num_classes=num_classes,
        positional_embedding=positional_embedding,
    )


def _patch(size, patch, seq_pool, positional_embedding="learnable"):
    return dict(
        _SIZES[size],
        tokenizer="patch",
        kernel_size=patch,
        img_size=32,
        num_classes=10,
        positional_embedding=positional_embedding,
        seq_pool=seq_pool,
    )


MODEL_CONFIGS: dict[str, dict] = {
    "cct_2_3x2_32": _cct(2, 3, 2, 32, 10),
    "cct_2_3x2_32_sine": _cct(2, 3, 2, 32, 10, "sine"),
    "cct_4_3x2_32": _cct(4, 3, 2, 32, 10),
    "cct_4_3x2_32_sine": _cct(4, 3, 2, 32, 10, "sine"),
    "cct_6_3x1_32": _cct(6, 3, 1, 32, 10),
    "cct_6_3x1_32_sine": _cct(6, 3, 1, 32, 10, "sine"),
    "cct_6_3x2_32": _cct(6, 3, 2, 32, 10),
    "cct_6_3x2_32_sine": _cct(6, 3, 2, 32, 10, "sine"),
    "cct_7_3x1_32": _cct(7, 3, 1, 32, 10),
    "cct_7_3x1_32_sine": _cct(7, 3, 1, 32, 10, "sine"),
    "cct_7_3x1_32_c100": _cct(7, 3, 1, 32, 100),
    "cct_7_3x1_32_sine_c100": _cct(7, 3, 1, 32, 100, "sine"),
    "cct_7_3x2_32": _cct(7, 3, 2, 32, 10),
    "cct_7_3x2_32_sine": _cct(7, 3, 2, 32, 10, "sine"),
    "cct_7_7x2_224": _cct(7, 7, 2, 224, 102),
    "cct_7_7x2_224_sine": _cct(7, 7, 2, 224, 102, "sine"),
    "cct_14_7x2_224": _cct(14, 7, 2, 224, 1000),
    "cct_14_7x2_384": _cct(14, 7, 2, 384, 1000),
    "cct_14_7x2_384_fl": _cct(14, 7, 2, 384, 102),
    **{
        f"{family}_{size}_4_32{suffix}": _patch(size, 4, family == "cvt", embedding)
        for family in ("cvt", "vit")
        for size in (2, 4, 6, 7)
        for suffix, embedding in (("", "learnable"), ("_sine", "sine"))
    },
}


# The text models of the official src/text/: word width 300, sine positions, attention dropout
# 0.1, stochastic depth 0.1, no other dropout, as the official text builders set them.
# (num_layers, num_heads, mlp_ratio, width) from each family's file on the official main
# branch: src/text/cvt.py keeps its 6-layer model 128 wide, src/text/vit.py makes it 256 wide.
_TEXT_SIZES = {
    "cct": {2: (2, 2, 1, 128), 4: (4, 2, 1, 128), 6: (6, 4, 2, 256)},
    "cvt": {2: (2, 2, 1, 128), 4: (4, 2, 1, 128), 6: (6, 4, 2, 128)},
    "vit": {2: (2, 2, 1, 128), 4: (4, 2, 1, 128), 6: (6, 4, 2, 256)},
    "transformer": {2: (2, 2, 1, 300), 4: (4, 2, 1, 300), 6: (6, 4, 2, 300)},
}


def _text(family, size):
    layers, heads, mlp_ratio, width = _TEXT_SIZES[family][size]
    tokenizer = {"cct": "convolutional", "transformer": "none"}.get(family, "patch")
    return dict(
        tokenizer=tokenizer,
        num_layers=layers,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        embedding_dim=width,
        kernel_size=4,
        seq_pool=family in ("cct", "cvt"),
    )


TEXT_MODEL_CONFIGS: dict[str, dict] = {
    f"text_{family}_{size}": _text(family, size)
    for family in ("cct", "cvt", "vit", "transformer")
    for size in (2, 4, 6)
}
_ALL_CONFIGS = {**MODEL_CONFIGS, **TEXT_MODEL_CONFIGS}
MODALITIES = {"image": MODEL_CONFIGS, "text": TEXT_MODEL_CONFIGS}


def list_models(pattern: str | None = None, *, modality: str | None = None) -> list[str]:
    """The official model names, sorted; ``pattern`` is a shell-style filter (``"cct_7*"``),
    ``modality`` ``"image"`` or ``"text"`` keeps one family of inputs."""
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {sorted(MODALITIES)}; got {modality!r}.")
    names = sorted(_ALL_CONFIGS if modality is None else MODALITIES[modality])
    return names if pattern is None else fnmatch.filter(names, pattern)


def is_text_model(name: str) -> bool:
    return name in TEXT_MODEL_CONFIGS


def close_model_names(text: str) -> list[str]:
    """Up to four official names that look like ``text``, a name or the start of one (a
    pattern's wildcards ignored)."""
    text = str(text).strip("*?[]")
    close = difflib.get_close_matches(text, _ALL_CONFIGS, n=4, cutoff=0.6)
    if close:
        return close
    starts = {}  # each start of len(text) characters, and the first name that has it
    for name in sorted(_ALL_CONFIGS):
        starts.setdefault(name[: len(text)], name)
    return [starts[start] for start in difflib.get_close_matches(text, starts, n=4, cutoff=0.6)]


def model_config(name: str) -> dict:
    """The constructor arguments of :class:`cct_fast.CCT` (or, for a text name,
    :class:`cct_fast.TextCCT`) for an official model name."""
    try:
        return dict(_ALL_CONFIGS[name])
    except KeyError:
        close = close_model_names(name)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown model name {name!r}.{hint} cct_fast.list_models() lists all "
            f"{len(_ALL_CONFIGS)} official names."
        ) from None
