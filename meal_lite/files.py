"""Files written whole or not at all, and files known by their hash.

Every file meal-lite writes that a later run reads - checkpoints, results, metrics, soft-label shards
and manifests - goes through :func:`atomic_write`: a temporary file in the same folder, flushed and
fsynced, then renamed over the target (``os.replace`` is atomic on one file system), then the folder
fsynced so the rename itself survives a crash. A run killed mid-write leaves the previous file as it
was, never half of a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "write_json", "write_text", "file_sha256"]


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> Path:
    """Call ``write(binary file handle)`` on a temp file next to ``path``, fsync, then rename it over ``path``.

    If anything fails midway the temp file is removed and the previous file at ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json(path: str | Path, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
