"""What every data root offers (`Storage`): files under '/'-separated keys, each written whole or
not at all; `LocalStorage` and `ObjectStorage` implement it."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.storage.files import LEFTOVER_AGE

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from pipelines.storage.roots import Location

WAREHOUSE_FILE = "warehouse.duckdb"
#: The folder (in a local root, or in an s3:// root's local directory) where files are written
#: before they become their keys; what a killed writer leaves there, `Storage.sweep` removes.
STAGING = ".staging"
#: What changes whenever a file is rewritten: (inode, size, mtime_ns) on a local disk,
#: (ETag, size, last-modified) in object storage.
Fingerprint = tuple[int | str, ...]


class Storage(ABC):
    """A data root: files under keys, each written whole or not at all."""

    #: The root itself: a local Path, or an ObjectPath (str() gives the s3:// URL).
    root: Location

    @abstractmethod
    def location(self, key: str) -> Location:
        """Where `key` is: a Path under a local root, an ObjectPath in object storage."""

    @abstractmethod
    def absolute(self) -> Storage:
        """The same root with locations whose str() reads from any working directory."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def open_input(self, key: str) -> pa.NativeFile:
        """A seekable reader, e.g. for a Parquet footer without reading the whole file."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> Location:
        """Store `data` under `key` in one step: readers see the previous file or the whole new
        one, never part of either, and a write that fails or is killed leaves the previous one.

        `overwrite=False` never replaces an existing key (FileExistsError instead), also when
        another process writes the same key at the same moment. A local file is readable by its
        owner only (0600, in 0700 folders), the reports too.
        """

    @abstractmethod
    def staged(
        self, key: str, *, overwrite: bool = True
    ) -> contextlib.AbstractContextManager[Path]:
        """A local temporary file to write `key` into; when the block ends without an error it
        becomes `key` in one step, as with `write_bytes`, and otherwise nothing changes."""

    @contextlib.contextmanager
    def staged_many(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        """`staged` for many keys: local temporary files that become their keys when the block
        ends without an error (each whole, as with `write_bytes`); otherwise nothing changes."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.staged(key)) for key in keys]

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def remove(self, key: str) -> None:
        """Remove `key`; a missing key is fine."""

    @abstractmethod
    def files(self, prefix: str, *, named: str | None = None) -> dict[str, Fingerprint]:
        """Every file under `prefix` at any depth (names starting with '.' left out), by key,
        with a fingerprint that changes whenever the file is rewritten or replaced.

        With `named`, only the files of that name one folder below `prefix` (a partitioned
        table's `<partition>/data.parquet`), which a local disk lists much faster."""

    @abstractmethod
    def children(self, prefix: str) -> list[str]:
        """The names directly under `prefix` (files and folders), sorted; none if it is absent."""

    @abstractmethod
    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock for one writer of `name` (see each implementation for its reach)."""

    @abstractmethod
    def sweep(self, *, older_than: timedelta = LEFTOVER_AGE) -> list[str]:
        """Remove what killed writers left behind, once older than any run can live and held by
        no live process; returns what was removed (paths, or the uploads aborted)."""

    @abstractmethod
    def default_warehouse(self) -> Path:
        """Where the DuckDB warehouse file goes when KIS_WAREHOUSE is not set (always local)."""

    def duckdb_path(self, key: str) -> str:
        """`key`, or a glob of keys, as DuckDB reads it once `attach` was called."""
        return str(self.absolute().location(key))

    @property
    def plain_duckdb_reads(self) -> bool:
        """Whether a plain DuckDB (the `duckdb` shell) reads `duckdb_path`s without `attach`."""
        return True

    @abstractmethod
    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let `con` read `duckdb_path`s."""
