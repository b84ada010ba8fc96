"""ParquetTables: the tidy tables as one Parquet file per table per day, Hive-partitioned.

Layout: parquet/<table>/snapshot_date=YYYY-MM-DD/data.parquet, each replaced atomically, so a
day re-run swaps the whole day at once and a failed run leaves the previous file in place.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.balance import schema
from pipelines.balance.files import atomic_path

FILE_NAME = "data.parquet"


class ParquetTables:
    def __init__(self, data_root: Path):
        self.root = data_root / "parquet"

    def path(self, table: str, snapshot_date: date) -> Path:
        return (
            self.root / table / f"{schema.PARTITION_COLUMN}={snapshot_date.isoformat()}" / FILE_NAME
        )

    def glob(self, table: str) -> str:
        return str(self.root / table / f"{schema.PARTITION_COLUMN}=*" / FILE_NAME)

    def month_glob(self, table: str, month: date) -> str:
        """Every day of one month: `month` is any day in it."""
        return str(
            self.root / table / f"{schema.PARTITION_COLUMN}={month:%Y-%m}-[0-3][0-9]" / FILE_NAME
        )

    def write(self, table: str, snapshot_date: date, data: pa.Table) -> Path:
        expected = schema.TABLES[table]
        if not data.schema.equals(expected):
            raise ValueError(f"{table}: schema differs from the declared one:\n{data.schema}")
        final = self.path(table, snapshot_date)
        with atomic_path(final) as tmp:
            pq.write_table(data, tmp, compression="zstd")
        return final

    def days(self, table: str) -> list[date]:
        # os.scandir and strings, not pathlib: every run lists years of days
        prefix = f"{schema.PARTITION_COLUMN}="
        try:
            with os.scandir(self.root / table) as entries:
                names = [e.name for e in entries if e.name.startswith(prefix) and e.is_dir()]
        except FileNotFoundError:
            return []
        base = f"{self.root / table}/"
        return sorted(
            date.fromisoformat(name.removeprefix(prefix))
            for name in names
            if os.path.exists(f"{base}{name}/{FILE_NAME}")
        )

    def file_stats(self, table: str, days: list[date]) -> list[os.stat_result]:
        """os.stat of each day's file (FileNotFoundError if one is missing)."""
        base = f"{self.root / table}/{schema.PARTITION_COLUMN}="
        return [os.stat(f"{base}{day.isoformat()}/{FILE_NAME}") for day in days]
