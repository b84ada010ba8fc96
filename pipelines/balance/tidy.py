"""The tidy step for one or many days: landed raw → checked tables → Parquet, all or nothing.

Each day is locked from reading its raw files to writing its two tables, so concurrent runs
of the same day cannot leave tables built from different fetches. If a blocking check fails
on any day, nothing is written and every earlier file stays as it was. Closed months that
changed are then compacted (compaction.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa

from pipelines.balance import checks, flatten, layouts
from pipelines.balance.compaction import CompactedMonths
from pipelines.balance.fetch import MissingRawError, today_in_seoul
from pipelines.balance.files import locked
from pipelines.balance.landing import RawLanding, Snapshot, read_snapshot
from pipelines.balance.tables import ParquetTables


@dataclass
class TidyResult:
    days: list[date]
    tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    outcomes: list[checks.Outcome] = field(default_factory=list)
    written: dict[str, list[Path]] = field(default_factory=dict)
    compacted: list[Path] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)

    @property
    def blocked(self) -> list[checks.Outcome]:
        return [o for o in self.outcomes if o.check.blocking and not o.passed]

    def rows(self, table: str) -> int:
        return sum(t.num_rows for t in self.tables.get(table, []))


def _labelled(snapshot: Snapshot) -> bool:
    """Has a known layout; the others are reported by the known_layout check, not flattened."""
    return (
        layouts.find(snapshot.account.product_code, len(snapshot.output1), snapshot.snapshot_date)
        is not None
    )


def build_days(data_root: Path, days: list[date]) -> TidyResult:
    """Flatten and check every day from its newest landed raw files; write if all pass."""
    landing, store = RawLanding(data_root), ParquetTables(data_root)
    missing = [day for day in days if not landing.latest_files(day)]
    if missing:
        raise MissingRawError(
            f"No raw balance landed for {', '.join(map(str, missing))}: nothing to rebuild "
            "those days from (KIS reports only the current balance). Materialize kis_balance_raw "
            "for them first, or leave them out of the range."
        )
    result = TidyResult(days=sorted(days))
    merged = {(c.table, c.name): checks.Outcome(c) for c in checks.CHECKS}
    with contextlib.ExitStack() as stack:
        for day in result.days:  # in date order, so two runs never wait on each other in a cycle
            stack.enter_context(locked(data_root / ".locks" / f"tidy-{day}.lock"))
        day_tables: dict[date, dict[str, pa.Table]] = {}
        for day in result.days:
            snapshots = [read_snapshot(path) for path in landing.latest_files(day)]
            labelled = [s for s in snapshots if _labelled(s)]
            tables = {
                "asset_categories": flatten.asset_categories(labelled),
                "account_summary": flatten.account_summary(labelled),
            }
            existing = {name: store.path(name, day) for name in tables}
            for outcome in checks.run(snapshots, tables, existing=existing):
                merged[(outcome.check.table, outcome.check.name)].problems += [
                    f"{day}: {text}" for text in outcome.problems
                ]
            day_tables[day] = tables
            result.accounts.update(s.account.id for s in snapshots)
            for name, table in tables.items():
                result.tables.setdefault(name, []).append(table)
        result.outcomes = list(merged.values())
        if result.blocked:
            return result
        for day, tables in day_tables.items():
            for name, table in tables.items():
                result.written.setdefault(name, []).append(store.write(name, day, table))
    # after the day locks: a closed month that changed (or just closed) becomes one file again
    result.compacted = CompactedMonths(data_root).refresh(today_in_seoul())
    return result
