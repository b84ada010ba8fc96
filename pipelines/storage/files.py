"""Atomic owner-only writes (0600 files in 0700 folders): a reader sees the old file or the new
one, never half of either; and the sweep of what killed writers left behind."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

# Linux's syncfs(2): every dirty file of one filesystem flushed in one call
_syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: How long a leftover of an atomic write (or of a warehouse build) is kept: longer than any run
#: can live (a capture run is cancelled after an hour), so a file this old was left by a writer
#: that died. `sweep` also spares anything a live writer still holds, whatever its age.
LEFTOVER_AGE = timedelta(hours=6)


def private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents as 0700 (`mkdir -p` would give the parents
    0755); folders that exist are left as they are."""
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another writer
            continue


def _staging_for(final: Path, staging: Path | None) -> Path:
    """Where the temporary file of `final` goes: `staging` when it is on the same filesystem
    (a rename cannot cross filesystems), else beside `final`."""
    if staging is None:
        return final.parent
    private_dirs(staging)
    if os.stat(staging).st_dev != os.stat(final.parent).st_dev:
        return final.parent
    return staging


@contextlib.contextmanager
def atomic_path(
    final: Path, *, overwrite: bool = True, staging: Path | None = None
) -> Iterator[Path]:
    """Yield a temporary path (in `staging`, else beside `final`); on success it becomes `final`
    in one step.

    With `overwrite=False` an existing `final` is never replaced (FileExistsError instead).
    On any failure the temporary file is removed and `final` is left as it was. While the block
    runs the temporary file is flock'ed, so `sweep` never takes it from a live writer.
    """
    private_dirs(final.parent)
    fd, name = tempfile.mkstemp(
        dir=_staging_for(final, staging), prefix=f".{final.name}.", suffix=".tmp"
    )
    tmp = Path(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until the end: this writer is alive
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
        os.close(fd)


def _sync_filesystem(path: Path) -> None:
    """Flush every write to the filesystem holding `path` (syncfs; os.sync where there is none)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_paths(finals: Sequence[Path], *, staging: Path | None = None) -> Iterator[list[Path]]:
    """`atomic_path` for many files at once, with two syncs of the filesystem in all instead of
    two per file: every temporary file is written and made durable before any of them replaces
    its final file, so a kill at any point leaves each final file whole, old or new.

    With `staging`, the temporary files go in one folder of it, flock'ed while the block runs
    (one descriptor, however many files: a rebuild writes thousands)."""
    temps: list[Path] = []
    with contextlib.ExitStack() as stack:
        batch: Path | None = None
        if staging is not None and finals:
            private_dirs(staging)
            batch = Path(tempfile.mkdtemp(dir=staging, prefix=".batch.", suffix=".tmp"))
            stack.callback(shutil.rmtree, batch, ignore_errors=True)
            stack.enter_context(held(batch))
        try:
            for number, final in enumerate(finals):
                private_dirs(final.parent)
                where = final.parent if batch is None else _staging_for(final, batch)
                fd, name = tempfile.mkstemp(
                    dir=where, prefix=f".{number}.{final.name}.", suffix=".tmp"
                )
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
def held(directory: Path) -> Iterator[None]:
    """Hold an flock on a staging folder while its writer lives, so `sweep` spares it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (created if missing, mode 0600)."""
    private_dirs(lock_path.parent)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def sweep(
    directory: Path,
    *,
    older_than: timedelta = LEFTOVER_AGE,
    named: Callable[[str], bool] = lambda name: True,
) -> list[Path]:
    """Remove what dead writers left in `directory` (only the entries `named` selects): a file
    or folder is removed once neither it nor anything directly in it changed for `older_than`,
    and only when no live process holds its flock (`atomic_path`, `atomic_paths` hold one
    while they write). Returns what was removed."""
    removed: list[Path] = []
    cutoff = time.time() - older_than.total_seconds()
    try:
        entries = [entry for entry in os.scandir(directory) if named(entry.name)]
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            if _last_change(path) >= cutoff:
                continue
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if entry.is_dir() else 0))
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer holds it
            os.close(fd)
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def _last_change(path: Path) -> float:
    """The newest modification time of `path` and, for a folder, of what is directly in it."""
    newest = os.lstat(path).st_mtime
    if path.is_dir() and not path.is_symlink():
        with os.scandir(path) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest
