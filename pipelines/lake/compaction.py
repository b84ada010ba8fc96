"""Closed months of each tidy table compacted into one Parquet file, so years of history are
tens of files to a query instead of thousands.

Layout: compacted/<table>/YYYY-MM.parquet, with snapshot_date as a column. The daily files
under parquet/ stay the source of truth: a compacted file records the daily files it was built
from (day, inode, size, mtime; in object storage day, ETag, size, last-modified) and is used
only while they are exactly those; otherwise the views read that month's daily files until it
is compacted again. A compacted file that cannot be read is treated as missing (compacted
again); a month with a daily file that cannot be read is left to its daily files until that day
is rebuilt from raw (pipelines/tidy/heal.py). Both are noted in `found`.

A compacted account_summary month also holds each row's totals from output1
(account_totals.COLUMNS, from the same month's asset_categories), so that net_asset_history
reads one narrow table for closed months; it records the daily files of both tables.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa

from pipelines.errors import SchemaError
from pipelines.lake import account_totals, arrays, parquet, schema
from pipelines.lake.tables import ParquetTables
from pipelines.storage.base import Fingerprint
from pipelines.storage.damage import Damage, DamagedFileError
from pipelines.storage.objects import replaced_while_reading
from pipelines.storage.roots import DataRoot, Location, Storage, open_root

SOURCES_KEY = b"kis_balance_history.daily_sources"
#: Compacted files are read far more often than written: snappy decodes about twice as fast as
#: zstd for a few percent more bytes.
COMPRESSION = "snappy"
ROOT = "compacted"
MONTH_FILE = re.compile(r"^(\d{4}-\d{2})\.parquet$")
SORT_KEYS = [(schema.PARTITION_COLUMN, "ascending"), ("account_id", "ascending")]
#: A table whose compacted months carry the totals (account_totals) of another's rows.
TOTALS = {"account_summary": "asset_categories"}

#: The daily files a compacted month is built from: table → day → fingerprint.
Inputs = dict[str, dict[date, Fingerprint]]


def month_of(day: date) -> date:
    return day.replace(day=1)


@dataclass(frozen=True)
class TableFiles:
    """What a view of one table reads: compacted months, and the months still read by day."""

    compacted: list[Location]
    daily_months: list[date]
    #: Every file the view reads (compacted months and the daily files of the other months),
    #: by key, with its fingerprint when listed.
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    #: The months of `compacted`, in the same order.
    compacted_months: list[date] = field(default_factory=list)


class CompactedMonths:
    def __init__(self, data_root: DataRoot | Storage):
        self.storage = open_root(data_root)
        self.root = self.storage.location(ROOT)
        self.daily = ParquetTables(self.storage)
        #: Damaged files met so far, each with what was done about it.
        self.found: list[Damage] = []

    def key(self, table: str, month: date) -> str:
        return f"{ROOT}/{table}/{month:%Y-%m}.parquet"

    def path(self, table: str, month: date) -> Location:
        return self.storage.location(self.key(table, month))

    def sources(self, table: str) -> dict[date, dict[date, Fingerprint]]:
        """The days written for `table` with their files' fingerprints, grouped by month (first
        day of the month); one listing of the table."""
        grouped: dict[date, dict[date, Fingerprint]] = defaultdict(dict)
        for day, fingerprint in self.daily.fingerprints(table).items():
            grouped[month_of(day)][day] = fingerprint
        return dict(grouped)

    def months(self, table: str) -> dict[date, list[date]]:
        """The days written for `table`, grouped by month (first day of the month)."""
        return {month: list(days) for month, days in self.sources(table).items()}

    def inputs(
        self, table: str, month: date, sources: Mapping[str, dict[date, dict[date, Fingerprint]]]
    ) -> Inputs:
        """The daily files `table`'s compacted `month` is built from, from each table's
        `sources` (TOTALS: another table's too)."""
        found = {table: sources[table].get(month, {})}
        if table in TOTALS:
            found[TOTALS[table]] = sources[TOTALS[table]].get(month, {})
        return found

    def all_sources(self, table: str) -> dict[str, dict[date, dict[date, Fingerprint]]]:
        """`sources` of `table` and of the table its totals come from (TOTALS)."""
        names = [table, TOTALS[table]] if table in TOTALS else [table]
        return {name: self.sources(name) for name in names}

    def compacted_months(self, table: str) -> set[date]:
        """Months that have a compacted file of `table` (current or not)."""
        return set(self._compacted_files(table))

    def _compacted_files(self, table: str) -> dict[date, Fingerprint]:
        base = f"{ROOT}/{table}/"
        found = {}
        for key, fingerprint in self.storage.files(base).items():
            name = MONTH_FILE.match(key.removeprefix(base))
            if name:
                found[date.fromisoformat(name[1] + "-01")] = fingerprint
        return found

    @staticmethod
    def _fingerprint(inputs: Inputs) -> str:
        """The month's daily files as recorded in a compacted file; any rewrite or removal
        changes it. One table's: a list of days (as before TOTALS); more: one per table."""
        listed = {
            table: [[day.isoformat(), *fingerprint] for day, fingerprint in days.items()]
            for table, days in inputs.items()
        }
        return json.dumps(next(iter(listed.values())) if len(listed) == 1 else listed)

    def is_current(
        self,
        table: str,
        month: date,
        inputs: Inputs,
        compacted: set[date] | None = None,
    ) -> bool:
        if month not in (self.compacted_months(table) if compacted is None else compacted):
            return False
        try:
            recorded = (parquet.read_schema(self.path(table, month)).metadata or {}).get(
                SOURCES_KEY
            )
        except FileNotFoundError:  # removed while we looked
            return False
        except DamagedFileError as error:  # as if missing: compacted again, read by day meanwhile
            self._note(
                error,
                f"the views read its {len(inputs[table])} daily files until it is compacted again",
            )
            return False
        return recorded is not None and recorded.decode() == self._fingerprint(inputs)

    def _note(self, error: DamagedFileError, action: str) -> None:
        """Note a damaged file and what was done (the latest action for a file stands)."""
        self.found = [found for found in self.found if found.path != str(error.path)]
        self.found.append(Damage.of(error, action))

    def compact(
        self,
        table: str,
        month: date,
        inputs: Inputs,
        fresh: Mapping[tuple[str, date], tuple[Fingerprint, pa.Table]] | None = None,
    ) -> Location:
        """Write the month's daily files as one file sorted by day and account (with TOTALS,
        the totals of the other table's rows as more columns).

        The fingerprints come from before reading, so a day rewritten meanwhile makes the new
        file stale (and unused) rather than wrong. A day in `fresh` (the table a run just wrote,
        with its file's fingerprint then) is taken from memory while its file is unchanged.
        """
        merged = self._month(table, inputs[table], fresh).sort_by(SORT_KEYS)
        if table in TOTALS:
            source = TOTALS[table]
            merged = account_totals.attach(merged, self._month(source, inputs[source], fresh))
        merged = merged.replace_schema_metadata({SOURCES_KEY: self._fingerprint(inputs).encode()})
        with self.storage.staged(self.key(table, month)) as tmp:
            parquet.write(merged, tmp, compression=COMPRESSION)
        return self.path(table, month)

    def _month(
        self,
        table: str,
        days: dict[date, Fingerprint],
        fresh: Mapping[tuple[str, date], tuple[Fingerprint, pa.Table]] | None,
    ) -> pa.Table:
        """The days' rows of `table` with snapshot_date as their first column."""
        parts = []
        for day, fingerprint in days.items():
            written = (fresh or {}).get((table, day))
            if written is not None and written[0] == fingerprint:
                data = written[1]
            else:
                data = self.daily.read(table, day)
            if not data.schema.equals(schema.TABLES[table]):
                raise SchemaError(f"{self.daily.path(table, day)}: not the declared {table} schema")
            dates = arrays.dates([day] * data.num_rows)
            parts.append(data.add_column(0, schema.PARTITION_COLUMN, dates))
        if not parts:
            fields = [pa.field(schema.PARTITION_COLUMN, pa.date32()), *schema.TABLES[table]]
            return pa.schema(fields).empty_table()
        return pa.concat_tables(parts)

    def refresh(
        self,
        today: date,
        fresh: Mapping[tuple[str, date], tuple[Fingerprint, pa.Table]] | None = None,
        *,
        rewrite: frozenset[tuple[str, date]] = frozenset(),
    ) -> list[Location]:
        """Compact every closed month (before today's) whose compacted file is missing, stale or
        damaged, or is in `rewrite` as (table, month), and remove compacted files of months that
        no longer have daily files (`fresh`: tables just written, read from memory instead of
        their files; see `compact`). A month with a damaged daily file stays read by day, noted
        in `found`.

        Costs one listing of each table's daily and compacted files, and one footer read per
        compacted month, when nothing changed; a month at a time is read.
        """
        written = []
        with self.storage.lock("compaction"):
            for table in schema.TABLES:
                # listed as each table's turn comes: a day another writer replaced meanwhile is
                # recorded as it is now, so the file written is current
                sources = self.all_sources(table)
                months = sources[table]
                compacted = self.compacted_months(table)
                for month, days in sorted(months.items()):
                    if month >= month_of(today):
                        continue
                    inputs = self.inputs(table, month, sources)
                    if (table, month) not in rewrite and self.is_current(
                        table, month, inputs, compacted
                    ):
                        continue
                    try:
                        written.append(self.compact(table, month, inputs, fresh))
                        action = f"compacted again from its {len(days)} daily files"
                        self.found = [
                            dataclasses.replace(found, action=action)
                            if found.path == str(written[-1])
                            else found
                            for found in self.found
                        ]
                    except DamagedFileError as error:  # a daily file: rebuilt from raw by tidy
                        self._note(error, "its month is read by day until the day is rebuilt")
                        if (table, month) in rewrite:  # never read the compacted file again
                            self.storage.remove(self.key(table, month))
                    except OSError as error:
                        # in object storage, a day rewritten while we read it: as on a
                        # local disk, the month stays read by day until the next run
                        if not replaced_while_reading(error):
                            raise
                for orphan in sorted(compacted - months.keys()):
                    self.storage.remove(self.key(table, orphan))
        return written

    def files(self, table: str) -> TableFiles:
        """Current compacted files, and the months whose daily files must be read instead."""
        compacted, daily_months, compacted_months = [], [], []
        fingerprints: dict[str, Fingerprint] = {}
        existing = self._compacted_files(table)
        months = set(existing)
        sources = self.all_sources(table)
        for month, days in sorted(sources[table].items()):
            if self.is_current(table, month, self.inputs(table, month, sources), months):
                compacted.append(self.path(table, month))
                compacted_months.append(month)
                fingerprints[self.key(table, month)] = existing[month]
            else:
                daily_months.append(month)
                fingerprints |= {self.daily.key(table, day): days[day] for day in days}
        return TableFiles(compacted, daily_months, fingerprints, compacted_months)
