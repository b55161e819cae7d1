"""The official pretrained checkpoints, fetched into the Keras cache and converted once.

``create_model(name, weights="official")`` downloads the official ``.pth`` with
``keras.utils.get_file`` (into ``~/.keras/cct_fast``, checked against its SHA-256 where one is
recorded), converts it to ``NAME.weights.h5`` beside it on first use, and loads that. A failed
or mismatched download leaves nothing in the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from cct_fast.core.cards import CARDS
from cct_fast.core.model import CCT
from cct_fast.core.names import model_config
from cct_fast.errors import CheckpointError, ConfigError
from cct_fast.weights.loading import load_weights, save_weights

CACHE_SUBDIR = "cct_fast"
# The names the official repository released a checkpoint for, and where it is (their cards).
OFFICIAL_WEIGHTS = {name: card.weights for name, card in CARDS.items() if card.weights}


def official_weights(name, cache_dir=None) -> Path:
    """The converted official weights of ``name`` (``.weights.h5``), fetched if needed."""
    import keras

    entry = OFFICIAL_WEIGHTS.get(name)
    if entry is None:
        raise ConfigError(
            f"{name!r} has no official pretrained weights; these do: {', '.join(OFFICIAL_WEIGHTS)}."
        )
    # Keras' own default (KERAS_HOME or ~/.keras), resolved here to know where the file lands.
    root = Path(cache_dir or os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    target = root / CACHE_SUBDIR / entry.filename
    target.parent.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
    try:
        checkpoint = Path(
            keras.utils.get_file(
                entry.filename,
                origin=entry.url,
                file_hash=entry.sha256,
                hash_algorithm="sha256",
                cache_subdir=CACHE_SUBDIR,
                cache_dir=str(root),
            )
        )
    except ValueError as error:  # Keras keeps a file whose hash does not match
        target.unlink(missing_ok=True)
        raise CheckpointError(
            f"The download of {entry.url} does not match its recorded SHA-256; "
            f"nothing was kept. ({error})"
        ) from None
    except Exception as error:  # Keras removes what it had downloaded
        raise OSError(
            f"Could not download {entry.url} ({type(error).__name__}: {error}). "
            f"Download it by hand and pass the file as weights=..."
        ) from None
    converted = checkpoint.with_name(f"{name}.weights.h5")
    if not converted.exists():
        model = CCT(**model_config(name), name=name)
        load_weights(model, checkpoint)
        save_weights(model, converted)
    return converted
