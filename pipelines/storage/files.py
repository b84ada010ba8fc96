"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

# Linux's syncfs(2): every dirty file of one filesystem flushed in one call
_syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success it becomes `final` in one step.

    With `overwrite=False` an existing `final` is never replaced (FileExistsError instead).
    On any failure the temporary file is removed and `final` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, final)
        else:
            os.link(tmp, final)  # fails if final exists: landed files are immutable
            tmp.unlink()
        _fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _sync_filesystem(path: Path) -> None:
    """Flush every write to the filesystem holding `path` (syncfs; os.sync where there is none)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_paths(finals: Sequence[Path]) -> Iterator[list[Path]]:
    """`atomic_path` for many files at once, with two syncs of the filesystem in all instead of
    two per file: every temporary file is written and made durable before any of them replaces
    its final file, so a kill at any point leaves each final file whole, old or new."""
    temps: list[Path] = []
    try:
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
            os.close(fd)
            temps.append(Path(name))
        yield temps
        if finals:
            _sync_filesystem(finals[0].parent)  # the new contents, before any rename
            for tmp, final in zip(temps, finals, strict=True):
                os.replace(tmp, final)
            _sync_filesystem(finals[0].parent)  # the renames
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (created if missing, mode 0600)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
