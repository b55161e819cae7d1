"""The optional packages: each is imported where it is used, and a missing one is one error
type, :class:`~cct_fast.errors.MissingDependency`, that says what needed it and how to install
it. (The custom ops, the other optional part, fall back to the fused path instead:
:mod:`cct_fast.compute.custom_ops`.)"""

from __future__ import annotations

import importlib
from types import ModuleType

from cct_fast.errors import MissingDependency


def require(module: str, needed_for: str, install: str) -> ModuleType:
    """``import module``, or :class:`MissingDependency`: "``needed_for`` needs ``module``:
    pip install ``install``"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(
            f"{needed_for} needs the {module} package: pip install {install}."
        ) from None
