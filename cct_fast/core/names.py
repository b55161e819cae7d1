"""The official model names: listing them, looking one up, and suggesting the names close to
one that is not. Each name's facts are its card (:mod:`cct_fast.core.cards`).
"""

from __future__ import annotations

import difflib
import fnmatch

from cct_fast.core.cards import CARDS, ModelCard
from cct_fast.errors import ConfigError

# The constructor arguments of each name, by modality (views of the cards).
MODEL_CONFIGS: dict[str, dict] = {
    name: dict(card.architecture) for name, card in CARDS.items() if card.modality == "image"
}
TEXT_MODEL_CONFIGS: dict[str, dict] = {
    name: dict(card.architecture) for name, card in CARDS.items() if card.modality == "text"
}
MODALITIES = {"image": MODEL_CONFIGS, "text": TEXT_MODEL_CONFIGS}


def list_models(pattern: str | None = None, *, modality: str | None = None) -> list[str]:
    """The official model names, sorted; ``pattern`` is a shell-style filter (``"cct_7*"``),
    ``modality`` ``"image"`` or ``"text"`` keeps one family of inputs."""
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {sorted(MODALITIES)}; got {modality!r}.")
    names = sorted(CARDS if modality is None else MODALITIES[modality])
    return names if pattern is None else fnmatch.filter(names, pattern)


def is_text_model(name: str) -> bool:
    card = CARDS.get(name)
    return card is not None and card.modality == "text"


def close_model_names(text: str) -> list[str]:
    """Up to four official names that look like ``text``, a name or the start of one (a
    pattern's wildcards ignored)."""
    text = str(text).strip("*?[]")
    close = difflib.get_close_matches(text, CARDS, n=4, cutoff=0.6)
    if close:
        return close
    starts = {}  # each start of len(text) characters, and the first name that has it
    for name in sorted(CARDS):
        starts.setdefault(name[: len(text)], name)
    return [starts[start] for start in difflib.get_close_matches(text, starts, n=4, cutoff=0.6)]


def model_card(name: str) -> ModelCard:
    """The card of an official model name; an unknown name is refused with the names close
    to it."""
    try:
        return CARDS[name]
    except KeyError:
        close = close_model_names(name)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown model name {name!r}.{hint} cct_fast.list_models() lists all "
            f"{len(CARDS)} official names."
        ) from None


def model_config(name: str) -> dict:
    """The constructor arguments of :class:`cct_fast.CCT` (or, for a text name,
    :class:`cct_fast.TextCCT`) for an official model name."""
    return dict(model_card(name).architecture)
