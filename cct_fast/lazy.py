"""Package attributes imported on first use (PEP 562's module ``__getattr__``): importing a
package of cct_fast costs nothing until one of its names is used, so the ``cct-fast`` command
answers ``--help`` and refuses a bad recipe without TensorFlow."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable


def lazy_getattr(
    package: str, exports: dict[str, str], fallback: Callable[[str], object] | None = None
):
    """A module ``__getattr__`` for ``package``: a name of ``exports`` (name -> the module that
    defines it) is imported from its module, a submodule's name imports it, and any other
    name is ``fallback(name)``, which raises ``AttributeError`` for names it does not know.
    Each value is kept in the package, so it is looked up once."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        elif fallback is not None:
            value = fallback(name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    return __getattr__
