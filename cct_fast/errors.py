"""Every error class of cct_fast, in one place, so a caller catches them without importing
the modules that raise them.

:class:`CctFastError` is what was asked cannot be done as asked: a bad file, name, setting or
dataset. Each subclass is also the built-in error a Keras user would expect (``ValueError``
for bad input), so code that catches those keeps working. :class:`WriteError` is the machine
failing a write (a full disk, a read-only folder), an ``OSError``.
"""


class CctFastError(Exception):
    """A request that cct_fast cannot carry out as asked; the message says what to change."""


class ConfigError(CctFastError, ValueError):
    """An unknown model name, or an architecture or implementation setting out of range."""


class CheckpointError(CctFastError, ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class ExportError(CctFastError, RuntimeError):
    """An export whose graph did not pass the checks; nothing was written."""


class RecipeError(CctFastError, ValueError):
    """A recipe file that cannot be read, or holds unknown keys or bad values."""


class DatasetError(CctFastError, ValueError):
    """A dataset that cannot be found, fetched or read."""


class ImageFileError(CctFastError, ValueError):
    """A file that is not a whole image TensorFlow can decode, or one too large to decode."""


class RunError(CctFastError, RuntimeError):
    """A run folder that cannot be started or resumed as asked."""


class FolderBusy(CctFastError, RuntimeError):
    """A folder another process holds with :func:`cct_fast.base.files.folder_lock`."""


class MissingDependency(CctFastError, ImportError):
    """An optional package that what was asked needs is not installed; the message says how
    to install it (:func:`cct_fast.base.optional.require`)."""


class WriteError(OSError):
    """A file that could not be written; the file at the target, if any, is unchanged."""

    def __str__(self):
        return self.strerror
