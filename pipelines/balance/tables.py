"""ParquetTables: the tidy tables as one Parquet file per table per day, Hive-partitioned.

Layout: parquet/<table>/snapshot_date=YYYY-MM-DD/data.parquet, each replaced atomically, so a
day re-run swaps the whole day at once and a failed run leaves the previous file in place.
"""

from __future__ import annotations

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
        prefix = f"{schema.PARTITION_COLUMN}="
        return sorted(
            date.fromisoformat(d.name.removeprefix(prefix))
            for d in (self.root / table).glob(prefix + "*")
            if (d / FILE_NAME).exists()
        )
