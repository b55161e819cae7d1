"""Writing user files so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import shutil
import sys
import traceback
import uuid
from pathlib import Path

from cct_fast.errors import FolderBusy, WriteError

# Keras picks the format from these endings, so a temporary file must keep them.
_KEPT_SUFFIXES = (".weights.h5", ".keras", ".h5")
# ".{target name}.{writer's pid}-{random}.partial{suffix}"
_PARTIAL = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.partial")
_SLACK_BYTES = 1 << 20  # file-format overhead allowed beyond the data a writer announces


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        pass
    return True


def _remove_stale_partials(folder: Path):
    """Remove the temporary files that writers killed mid-write (``kill -9``, a crash) left in
    ``folder``: those whose writing process no longer runs."""
    with contextlib.suppress(OSError):
        for candidate in folder.iterdir():
            found = _PARTIAL.match(candidate.name)
            if found and not _running(int(found.group(1))):
                with contextlib.suppress(OSError):
                    candidate.unlink()


def _check_space(folder: Path, expected_bytes: int, path: Path, kept: str):
    """Refuse a write the disk cannot hold before anything is written (a folder that cannot
    be written at all fails on its own, with its real cause)."""
    needed = expected_bytes + _SLACK_BYTES
    free = shutil.disk_usage(folder).free
    if free < needed and os.access(folder, os.W_OK):
        raise WriteError(
            errno.ENOSPC,
            f"Cannot write {path}: not enough space (it needs about "
            f"{needed / 2**20:.1f} MB, {free / 2**20:.1f} MB are "
            f"free){kept}",
        )


def check_room_for(folder: Path, sizes: dict[str, int], what: str) -> None:
    """Refuse, before anything is written, files of ``sizes`` (name -> bytes) that ``folder``'s
    disk cannot hold: what each adds over the file of that name already there, plus a
    temporary copy of the largest, which :func:`atomic_output` writes beside it."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    grows = sum(
        max(0, size - ((folder / name).stat().st_size if (folder / name).is_file() else 0))
        for name, size in sizes.items()
    )
    needed = grows + max(sizes.values(), default=0) + _SLACK_BYTES
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise WriteError(
            errno.ENOSPC,
            f"Not enough space for {what} in {folder}: its {', '.join(sizes)} need about "
            f"{needed / 2**20:,.1f} MB and {free / 2**20:,.1f} MB are free; nothing was written",
        )


@contextlib.contextmanager
def _released_on_failure(temporary: Path):
    """A writer that fails on a full disk (h5py) keeps the temporary file open in objects that
    its frames still hold; their finalizers fail again while the disk stays full, print a
    traceback each, and HDF5 crashed at exit. On failure, empty the file to give its space
    back, then let those objects go, their h5py complaints unprinted: the one error raised
    stays the only report."""
    previous = sys.unraisablehook

    def hook(unraisable):
        if not (
            issubclass(unraisable.exc_type, (OSError, RuntimeError))
            and "h5py" in repr(unraisable.object)
        ):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    except Exception as error:
        with contextlib.suppress(OSError):
            os.truncate(temporary, 0)
        traceback.clear_frames(error.__traceback__)
        gc.collect()
        raise
    finally:
        sys.unraisablehook = previous


@contextlib.contextmanager
def atomic_output(path, expected_bytes=0):
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder (so the final ``os.replace`` is atomic) and
    keeps the ending Keras needs; on any failure it is removed and ``path`` is untouched. A
    failure to write is one :class:`WriteError` that names ``path`` and its cause.
    ``expected_bytes``, when the caller knows about how much it writes, is checked against
    the free space first. Stale temporary files of killed writers in the folder are removed.
    """
    path = Path(path)
    suffix = next((s for s in _KEPT_SUFFIXES if path.name.endswith(s)), path.suffix)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}")
    kept = f"; {path} is unchanged" if path.exists() else ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(path.parent)
        if expected_bytes:
            _check_space(path.parent, expected_bytes, path, kept)
        with _released_on_failure(temporary):
            yield temporary
        os.replace(temporary, path)
    except WriteError:
        raise
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise WriteError(error.errno, f"Cannot write {path}: {reason}{kept}") from error
    finally:
        with contextlib.suppress(OSError):  # never hide the real error behind the cleanup's
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(folder):
    """Hold ``folder/.lock`` for the block (creating the folder): another process asking for it
    meanwhile is refused at once with :class:`FolderBusy`. The operating system releases the
    lock with the process that holds it, however that process ends."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            raise FolderBusy(
                f"{folder} is in use by another process" + (f" (pid {holder})" if holder else "")
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
