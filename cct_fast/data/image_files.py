"""Image files checked from their first and last bytes, before any is decoded.

A folder dataset is read by ``tf.io.decode_image`` deep inside the input pipeline, where a bad
file ends the run with an error that does not name it. So each file is checked up front, in
microseconds and without decoding: it must be a PNG, JPEG, GIF or BMP (what TensorFlow decodes,
whatever its name says), end as a whole file of its format ends, and declare no more than
:data:`MAX_PIXELS`, so that a small file cannot make the decoder allocate gigabytes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from cct_fast.errors import ImageFileError

# PIL's own decompression-bomb limit: a quarter of a GiB of 8-bit RGB, 9459 x 9459 pixels.
MAX_PIXELS = 89_478_485

_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(file):
    """(width, height) from a JPEG's frame header, walking the segments before it."""
    file.seek(2)
    while True:
        marker = file.read(2)
        while len(marker) == 2 and marker[0] == 0xFF and marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + file.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] == 0x01 or 0xD0 <= marker[1] <= 0xD8:  # markers without a length
            continue
        length = int.from_bytes(file.read(2), "big")
        if marker[1] in _JPEG_FRAMES:
            frame = file.read(5)
            return (
                (int.from_bytes(frame[3:5], "big"), int.from_bytes(frame[1:3], "big"))
                if len(frame) == 5
                else None
            )
        if length < 2:
            return None
        file.seek(length - 2, 1)


def _header(file, size):
    """(format, width, height, whether the file ends as a whole one of its format does)."""
    head = file.read(32)
    file.seek(max(0, size - 12))
    tail = file.read(12)
    if head.startswith(_PNG) and head[12:16] == b"IHDR":
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return "PNG", width, height, tail == _PNG_END
    if head.startswith(b"\xff\xd8\xff"):
        dimensions = _jpeg_size(file)
        if dimensions is None:
            raise ImageFileError("a JPEG whose header is damaged or cut short (no frame header)")
        return ("JPEG", *dimensions, tail.endswith(b"\xff\xd9"))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        width, height = (int.from_bytes(head[i : i + 2], "little") for i in (6, 8))
        return "GIF", width, height, tail.endswith(b"\x3b")
    if head.startswith(b"BM") and len(head) >= 26:
        declared = int.from_bytes(head[2:6], "little")
        width, height = (
            abs(int.from_bytes(head[i : i + 4], "little", signed=True)) for i in (18, 22)
        )
        return "BMP", width, height, size >= declared
    return None


def decodes(path) -> bool:
    """Whether TensorFlow decodes the file at ``path`` (it is decoded: slow). What libjpeg or
    libpng print about a bad file is not shown: the caller names the file and what is wrong."""
    import tensorflow as tf

    try:
        with _native_stderr_silenced():
            tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 to /dev/null for the block: the decoders' C++ log lines ("Premature
    end of JPEG data", "Improper call to JPEG library in state 201") bypass Python's
    ``sys.stderr`` and TensorFlow's log level."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_image_file(path) -> tuple[int, int]:
    """``(width, height)`` of the image at ``path``; :class:`ImageFileError` saying what is
    wrong with it otherwise. A JPEG with bytes after its end (some cameras append data) is
    decoded once to tell it from a truncated one."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ImageFileError("an empty file")
    with open(path, "rb") as file:
        found = _header(file, size)
    if found is None:
        raise ImageFileError(
            "not an image TensorFlow can decode: its first bytes are those of "
            "no PNG, JPEG, GIF or BMP file"
        )
    kind, width, height, whole = found
    if width * height > MAX_PIXELS:
        raise ImageFileError(
            f"a {kind} of {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{MAX_PIXELS:,} (cct_fast.data.image_files.MAX_PIXELS): shrink it, or it is a "
            "decompression bomb"
        )
    if width == 0 or height == 0:
        raise ImageFileError(f"a {kind} of {width} x {height} pixels")
    if not whole and not (kind == "JPEG" and decodes(path)):
        raise ImageFileError(f"a truncated {kind}: the file ends before the image does")
    return width, height


def unusable_images(paths, label=str) -> list[str]:
    """``"label(path): why"`` for each of ``paths`` that :func:`check_image_file` refuses."""
    problems = []
    for path in paths:
        try:
            check_image_file(path)
        except (ImageFileError, OSError) as error:
            problems.append(f"{label(path)}: {error}")
    return problems
