"""Writing user files so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

# Keras picks the format from these endings, so a temporary file must keep them.
_KEPT_SUFFIXES = (".weights.h5", ".keras", ".h5")


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder (so the final ``os.replace`` is atomic) and
    keeps the ending Keras needs; on any failure it is removed and ``path`` is untouched.
    """
    path = Path(path)
    suffix = next((s for s in _KEPT_SUFFIXES if path.name.endswith(s)), path.suffix)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
