"""Closed months of each tidy table compacted into one Parquet file, so years of history are
tens of files to a query instead of thousands.

Layout: compacted/<table>/YYYY-MM.parquet, with snapshot_date as a column. The daily files
under parquet/ stay the source of truth: a compacted file records the daily files it was built
from (day, inode, size, mtime) and is used only while they are exactly those; otherwise the
views read that month's daily files until it is compacted again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.balance import arrays, schema
from pipelines.balance.files import atomic_path, locked
from pipelines.balance.tables import ParquetTables

SOURCES_KEY = b"kis_balance_history.daily_sources"
#: Compacted files are read far more often than written: snappy decodes about twice as fast as
#: zstd for a few percent more bytes.
COMPRESSION = "snappy"
MONTH_FILES = "[0-9][0-9][0-9][0-9]-[0-9][0-9].parquet"
SORT_KEYS = [(schema.PARTITION_COLUMN, "ascending"), ("account_id", "ascending")]


def month_of(day: date) -> date:
    return day.replace(day=1)


@dataclass(frozen=True)
class TableFiles:
    """What a view of one table reads: compacted months, and the months still read by day."""

    compacted: list[Path]
    daily_months: list[date]


class CompactedMonths:
    def __init__(self, data_root: Path):
        self.data_root = data_root
        self.root = data_root / "compacted"
        self.daily = ParquetTables(data_root)

    def path(self, table: str, month: date) -> Path:
        return self.root / table / f"{month:%Y-%m}.parquet"

    def months(self, table: str) -> dict[date, list[date]]:
        """The days written for `table`, grouped by month (first day of the month)."""
        grouped: dict[date, list[date]] = defaultdict(list)
        for day in self.daily.days(table):
            grouped[month_of(day)].append(day)
        return dict(grouped)

    def _sources(self, table: str, days: list[date]) -> str:
        """A fingerprint of the month's daily files; any rewrite or removal changes it."""
        stats = zip(days, self.daily.file_stats(table, days), strict=True)
        return json.dumps(
            [[day.isoformat(), s.st_ino, s.st_size, s.st_mtime_ns] for day, s in stats]
        )

    def is_current(self, table: str, month: date, days: list[date]) -> bool:
        path = self.path(table, month)
        if not path.exists():
            return False
        recorded = (pq.read_schema(path).metadata or {}).get(SOURCES_KEY)
        try:
            return recorded is not None and recorded.decode() == self._sources(table, days)
        except FileNotFoundError:  # a daily file went away while we looked
            return False

    def compact(self, table: str, month: date, days: list[date]) -> Path:
        """Write the month's daily files as one file sorted by day and account.

        The fingerprint is taken before reading, so a day rewritten meanwhile makes the new
        file stale (and unused) rather than wrong.
        """
        sources = self._sources(table, days)
        parts = []
        for day in days:
            data = pq.ParquetFile(self.daily.path(table, day)).read()  # read_table: pandas
            if not data.schema.equals(schema.TABLES[table]):
                raise ValueError(f"{self.daily.path(table, day)}: not the declared {table} schema")
            dates = arrays.dates([day] * data.num_rows)
            parts.append(data.add_column(0, schema.PARTITION_COLUMN, dates))
        merged = pa.concat_tables(parts).sort_by(SORT_KEYS)
        merged = merged.replace_schema_metadata({SOURCES_KEY: sources.encode()})
        with atomic_path(self.path(table, month)) as tmp:
            pq.write_table(merged, tmp, compression=COMPRESSION)
        return self.path(table, month)

    def refresh(self, today: date) -> list[Path]:
        """Compact every closed month (before today's) whose compacted file is missing or stale,
        and remove compacted files of months that no longer have daily files.

        Costs one stat per daily file when nothing changed; a month at a time is read.
        """
        written = []
        with locked(self.data_root / ".locks" / "compaction.lock"):
            for table in schema.TABLES:
                months = self.months(table)
                for month, days in sorted(months.items()):
                    if month < month_of(today) and not self.is_current(table, month, days):
                        written.append(self.compact(table, month, days))
                for orphan in sorted((self.root / table).glob(MONTH_FILES)):
                    if date.fromisoformat(orphan.stem + "-01") not in months:
                        orphan.unlink()
        return written

    def files(self, table: str) -> TableFiles:
        """Current compacted files, and the months whose daily files must be read instead."""
        compacted, daily_months = [], []
        for month, days in sorted(self.months(table).items()):
            if self.is_current(table, month, days):
                compacted.append(self.path(table, month))
            else:
                daily_months.append(month)
        return TableFiles(compacted, daily_months)
