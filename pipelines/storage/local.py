"""A data root in a local directory: temp file + rename for every write, flock locks, 0600 files,
0700 folders."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.storage.base import STAGING, WAREHOUSE_FILE, Fingerprint, Storage
from pipelines.storage.files import (
    LEFTOVER_AGE,
    atomic_path,
    atomic_paths,
    locked,
    sweep,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


class LocalStorage(Storage):
    """A directory: temp file + rename for every write, flock locks, 0600 files, 0700 folders."""

    def __init__(self, root: Path):
        self.root: Path = root

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def location(self, key: str) -> Path:
        return self.root / key if key else self.root

    def absolute(self) -> LocalStorage:
        return LocalStorage(self.root.resolve())

    def read_bytes(self, key: str) -> bytes:
        return self.location(key).read_bytes()

    def open_input(self, key: str) -> pa.NativeFile:
        import pyarrow as pa

        return pa.OSFile(str(self.location(key)))

    def write_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> Path:
        with self.staged(key, overwrite=overwrite) as tmp:
            tmp.write_bytes(data)
        return self.location(key)

    @contextlib.contextmanager
    def staged(self, key: str, *, overwrite: bool = True) -> Iterator[Path]:
        staging = self.root / STAGING
        with atomic_path(self.location(key), overwrite=overwrite, staging=staging) as tmp:
            yield tmp

    @contextlib.contextmanager
    def staged_many(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        # a rebuild writes thousands of files: one sync of the disk for all, not two per file
        finals = [self.location(key) for key in keys]
        with atomic_paths(finals, staging=self.root / STAGING) as temps:
            yield temps

    def sweep(self, *, older_than: timedelta = LEFTOVER_AGE) -> list[str]:
        """The temporary files of killed writers in the root's staging folder."""
        return [str(path) for path in sweep(self.root / STAGING, older_than=older_than)]

    def exists(self, key: str) -> bool:
        return self.location(key).exists()

    def remove(self, key: str) -> None:
        self.location(key).unlink(missing_ok=True)

    def files(self, prefix: str, *, named: str | None = None) -> dict[str, Fingerprint]:
        # os.scandir and strings, not pathlib: every run lists years of daily files
        found: dict[str, Fingerprint] = {}
        pending = [prefix.strip("/")]
        while pending:
            directory = pending.pop()
            try:
                with os.scandir(self.root / directory) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        key = f"{directory}/{entry.name}" if directory else entry.name
                        if named is not None:  # one stat per folder, no listing of each
                            if entry.is_dir():
                                self._stat_into(found, f"{key}/{named}")
                        elif entry.is_dir():
                            pending.append(key)
                        else:
                            stat = entry.stat()
                            found[key] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def children(self, prefix: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / prefix.strip("/")))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _stat_into(self, found: dict[str, Fingerprint], key: str) -> None:
        try:
            stat = os.stat(f"{self.root}/{key}")
        except (FileNotFoundError, NotADirectoryError):
            return
        found[key] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """flock on .locks/<name>.lock under the root: every process using this directory."""
        return locked(self.root / ".locks" / f"{name}.lock")

    def default_warehouse(self) -> Path:
        return self.root / WAREHOUSE_FILE

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Nothing to do: DuckDB reads local files itself."""
