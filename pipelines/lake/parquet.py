"""Every read and write of a Parquet file of the lake (daily files and compacted months).

A file that is there but cannot be read whole (cut short, bad magic bytes or footer, a page
that does not decode or fails its checksum) raises `DamagedFileError` naming it; a file that is
not there raises FileNotFoundError. Files are written with a CRC32 checksum per page, so a
changed byte in them is found when they are read whole (`read_table`, `verify`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage.damage import DamagedFileError
from pipelines.storage.objects import replaced_while_reading
from pipelines.storage.roots import Location, open_input


@contextlib.contextmanager
def _reading(location: Location) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError, EOFError) as error:
        if isinstance(error, DamagedFileError) or replaced_while_reading(error):
            raise  # in object storage, replaced meanwhile: read again, not damaged
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise DamagedFileError(location, reason) from error


def read_table(location: Location) -> pa.Table:
    """The whole file, every page decoded and its checksum (if written) verified."""
    with _reading(location), open_input(location) as source:
        # not pq.read_table: that imports pandas (see arrays.py)
        return pq.ParquetFile(source, page_checksum_verification=True).read()


def read_schema(location: Location) -> pa.Schema:
    """The file's schema, with its key-value metadata, from the footer alone."""
    with _reading(location), open_input(location) as source:
        return pq.read_schema(source)


def verify(location: Location) -> None:
    """Read the file whole (footer, every page, checksums), one row group at a time; raise
    DamagedFileError if any of it cannot be read."""
    with _reading(location), open_input(location) as source:
        reader = pq.ParquetFile(source, page_checksum_verification=True)
        for index in range(reader.num_row_groups):
            reader.read_row_group(index)


def write(data: pa.Table, path: Path, *, compression: str) -> None:
    """Write `data` to the local file `path` (a staged file of the data root), with page
    checksums."""
    pq.write_table(data, path, compression=compression, write_page_checksum=True)
