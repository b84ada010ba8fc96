"""ParquetTables: the tidy tables as one Parquet file per table per day, Hive-partitioned.

Layout: parquet/<table>/snapshot_date=YYYY-MM-DD/data.parquet, each replaced atomically, so a
day re-run swaps the whole day at once and a failed run leaves the previous file in place. A
file that cannot be read raises DamagedFileError naming it (pipelines/lake/parquet.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pyarrow as pa

from pipelines.errors import SchemaError
from pipelines.lake import parquet, schema
from pipelines.storage.base import Fingerprint
from pipelines.storage.roots import DataRoot, Location, Storage, open_root

FILE_NAME = "data.parquet"
ROOT = "parquet"


def _write_parquet(data: pa.Table, path: Path) -> None:
    parquet.write(data, path, compression="zstd")


class ParquetTables:
    def __init__(self, data_root: DataRoot | Storage):
        self.storage = open_root(data_root)
        self.root = self.storage.location(ROOT)

    def key(self, table: str, snapshot_date: date) -> str:
        return f"{ROOT}/{table}/{schema.PARTITION_COLUMN}={snapshot_date.isoformat()}/{FILE_NAME}"

    def path(self, table: str, snapshot_date: date) -> Location:
        return self.storage.location(self.key(table, snapshot_date))

    def glob(self, table: str) -> str:
        """Every day of `table`, as DuckDB reads it."""
        return self.storage.duckdb_path(f"{ROOT}/{table}/{schema.PARTITION_COLUMN}=*/{FILE_NAME}")

    def month_glob(self, table: str, month: date) -> str:
        """Every day of one month, as DuckDB reads it: `month` is any day in it."""
        return self.storage.duckdb_path(
            f"{ROOT}/{table}/{schema.PARTITION_COLUMN}={month:%Y-%m}-[0-3][0-9]/{FILE_NAME}"
        )

    def write(self, table: str, snapshot_date: date, data: pa.Table) -> Location:
        [location] = self.write_many({(table, snapshot_date): data})
        return location

    def write_many(self, tables: Mapping[tuple[str, date], pa.Table]) -> list[Location]:
        """Every (table, day)'s file, each whole or not at all, made durable together."""
        for (table, _), data in tables.items():
            if not data.schema.equals(schema.TABLES[table]):
                raise SchemaError(f"{table}: schema differs from the declared one:\n{data.schema}")
        keys = [self.key(table, day) for table, day in tables]
        # pyarrow writes without the GIL: two at a time keep both cores busy in a rebuild
        with self.storage.staged_many(keys) as temps, ThreadPoolExecutor(2) as pool:
            for _ in pool.map(_write_parquet, tables.values(), temps):
                pass
        return [self.storage.location(key) for key in keys]

    def read(self, table: str, snapshot_date: date) -> pa.Table:
        """The day's file whole; FileNotFoundError if there is none, DamagedFileError if it
        cannot be read."""
        return parquet.read_table(self.path(table, snapshot_date))

    def fingerprints(self, table: str) -> dict[date, Fingerprint]:
        """Each written day of `table`, in date order, with its file's fingerprint (one listing)."""
        base = f"{ROOT}/{table}/"
        prefix = f"{schema.PARTITION_COLUMN}="
        found: dict[date, Fingerprint] = {}
        for key, fingerprint in self.storage.files(base, named=FILE_NAME).items():
            partition, _, name = key.removeprefix(base).partition("/")
            if name != FILE_NAME or not partition.startswith(prefix):
                continue
            try:
                found[date.fromisoformat(partition.removeprefix(prefix))] = fingerprint
            except ValueError:  # not a day's directory
                continue
        return dict(sorted(found.items()))

    def days(self, table: str) -> list[date]:
        return list(self.fingerprints(table))
