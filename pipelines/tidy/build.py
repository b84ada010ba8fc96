"""The tidy step for one or many days: landed raw → checked tables → Parquet.

Each account is decided on its own: its newest landed answer that can be read and labelled
exactly is used, an answer that cannot is withheld (and named), and the other accounts are
written. An account none of whose answers of the day can be used keeps the rows it already has
in the day's Parquet files, if they can be read: a withheld or damaged answer never erases rows
that were good. Each day is locked from reading its raw files to writing its two tables, so
concurrent runs of the same day cannot leave tables built from different fetches. Only a
blocking check (a schema that changed) keeps a day from being written, and then nothing is
written and every earlier file stays as it was. Closed months that changed are then compacted
(compaction.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import MissingRawError, SnapshotError
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding, Snapshot, read_snapshot
from pipelines.kis import layouts
from pipelines.lake import arrays, schema
from pipelines.lake.compaction import CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.storage.damage import Damage, DamagedFileError
from pipelines.storage.roots import DataRoot, Location, Storage, open_root
from pipelines.tidy import checks, flatten

#: Days flattened and checked together in a rebuild (their answers' JSON held at once).
BATCH_DAYS = 31


@dataclass
class TidyResult:
    days: list[date]
    tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    outcomes: list[checks.Outcome] = field(default_factory=list)
    written: dict[str, list[Location]] = field(default_factory=dict)
    compacted: list[Location] = field(default_factory=list)
    #: Accounts with rows in the tables.
    accounts: set[str] = field(default_factory=set)
    #: "YYYY-MM-DD account" → why that account's newest answer of the day was withheld.
    withheld: dict[str, str] = field(default_factory=dict)
    #: Damaged derived files met (a day's file replaced, a compacted month), and what was done.
    damaged: list[Damage] = field(default_factory=list)

    @property
    def blocked(self) -> list[checks.Outcome]:
        return [o for o in self.outcomes if o.check.blocking and not o.passed]

    def rows(self, table: str) -> int:
        return sum(t.num_rows for t in self.tables.get(table, []))


def flatten_tables(snapshots: list[Snapshot]) -> dict[str, pa.Table]:
    return {
        "asset_categories": flatten.asset_categories(snapshots),
        "account_summary": flatten.account_summary(snapshots),
    }


def _held(check_name: str, snap: Snapshot | Location, error: Exception) -> checks.Withheld:
    path = snap.path if isinstance(snap, Snapshot) else snap
    text = str(error)
    if str(path) not in text:
        text += f" (raw file: {path})"
    return checks.Withheld(check_name, path.parent.name, text, path)


def accept(
    snapshots: list[Snapshot],
) -> tuple[dict[str, pa.Table], list[Snapshot], list[checks.Withheld]]:
    """The tables of every snapshot that can be labelled exactly, and the others withheld.

    All snapshots are flattened together (the fast path); only when that fails is each one
    flattened alone, to find which accounts to withhold.
    """
    labelled, held = [], []
    for snap in snapshots:
        try:
            layouts.resolve(
                snap.account.product_code, len(snap.output1), account_id=snap.account.id
            )
            labelled.append(snap)
        except layouts.UnknownLayoutError as error:
            held.append(_held("known_layout", snap, error))
    try:
        return flatten_tables(labelled), labelled, held
    except SnapshotError:
        pass
    exact = []
    for snap in labelled:
        try:
            flatten_tables([snap])
            exact.append(snap)
        except SnapshotError as error:
            held.append(_held("exact_amounts", snap, error))
    return flatten_tables(exact), exact, held


@dataclass
class DayTables:
    tables: dict[str, pa.Table]
    snapshots: list[Snapshot]
    #: What was withheld, each account's newest answer first.
    withheld: list[checks.Withheld]


def day_tables(landing: RawLanding, day: date) -> DayTables:
    """One day's tables from each account's newest answer that can be labelled exactly.

    An account whose newest answer is withheld keeps its newest earlier answer of the same day
    that can be labelled (so a bad re-fetch never erases good rows); the withheld answer is
    named either way.
    """
    pending = {account: list(files) for account, files in landing.answers_by_account(day).items()}
    chosen: list[Snapshot] = []
    withheld: list[checks.Withheld] = []
    tables: dict[str, pa.Table] | None = None
    first_round = True
    while pending:
        batch = []
        for files in pending.values():
            path = files.pop(0)
            try:
                batch.append(read_snapshot(path))
            except SnapshotError as error:
                withheld.append(_held("known_layout", path, error))
        accepted_tables, accepted, held = accept(batch)
        withheld += held
        chosen += accepted
        if first_round and not withheld:
            tables = accepted_tables  # the usual day: every newest answer is good
        first_round = False
        done = {s.account.id for s in accepted}
        pending = {a: files for a, files in pending.items() if files and a not in done}
    withheld = [_fate(held, chosen) for held in withheld]
    if tables is None:
        chosen.sort(key=lambda s: s.account.id)
        tables = flatten_tables(chosen)
    return DayTables(tables, chosen, withheld)


def _fate(held: checks.Withheld, chosen: list[Snapshot]) -> checks.Withheld:
    """The reason, plus the earlier answer the day keeps for that account instead, if any (if
    none, `build_days` says what the day keeps)."""
    kept = next((s for s in chosen if s.account.id == held.account_id), None)
    fate = f"; the day keeps its earlier answer {kept.path.name}" if kept else ""
    return checks.Withheld(held.check_name, held.account_id, held.reason + fate, held.path)


def _keep_previous(
    store: ParquetTables,
    day: date,
    tables: dict[str, pa.Table],
    accounts: set[str],
    damaged: list[Damage],
) -> tuple[dict[str, pa.Table], dict[str, dict[str, str]]]:
    """The day's tables with each of `accounts` (withheld) that has no rows in a table given
    back the rows it has in that table's file of the day as it is, where it can be read.

    Returns the tables (each in account order) and, per account that had no rows in some
    table: per table whose rows were kept, when they were fetched (none: nothing to keep).
    """
    kept: dict[str, dict[str, str]] = {}
    result = dict(tables)
    for name, table in tables.items():
        wanted = accounts - set(table["account_id"].to_pylist())
        for account in wanted:
            kept.setdefault(account, {})
        if not wanted:
            continue
        try:
            previous = store.read(name, day)
        except FileNotFoundError:
            continue
        except DamagedFileError as error:
            damaged.append(Damage.of(error, f"replaced; rows of {', '.join(sorted(wanted))} lost"))
            continue
        if not previous.schema.equals(table.schema):
            continue  # another schema: schema_unchanged stops the day
        rows = previous.filter(pc.is_in(previous["account_id"], arrays.strings(sorted(wanted))))
        for account, fetched_at in zip(
            rows["account_id"].to_pylist(), rows["fetched_at"].to_pylist(), strict=True
        ):
            kept[account][name] = f"{fetched_at:%Y-%m-%d %H:%M:%S} UTC"
        merged = pa.concat_tables([table, rows.cast(table.schema)])
        # a stable sort: each account's rows stay in their order
        result[name] = merged.take(pc.sort_indices(merged["account_id"]))
    return result, kept


def _without(table: pa.Table, keys: set[tuple[Any, ...]]) -> pa.Table:
    """The rows except those of the (account,) or (day, account) keys given."""
    if not keys:
        return table
    accounts = arrays.strings(sorted({key[-1] for key in keys}))
    drop = pc.is_in(table["account_id"], accounts)
    days = {key[0] for key in keys if len(key) == 2}
    if days and checks.DAY in table.column_names:
        drop = pc.and_(drop, pc.is_in(table[checks.DAY], arrays.dates(sorted(days))))
    return table.filter(pc.invert(drop))


@dataclass
class Batch:
    """Days whose every newest answer is good, flattened and checked together (the fast path
    of a rebuild): the tables carry a `snapshot_date` column until they are split by day."""

    tables: dict[str, pa.Table]
    snapshots: list[Snapshot]
    #: Days that need the account-by-account path: an answer of theirs was withheld.
    troubled: set[date]


def _batch(latest: dict[date, list[Location]], days: list[date]) -> Batch:
    """The days' newest answers (`latest`, by day) flattened and checked together."""
    snapshots, troubled = [], set()
    for day in days:
        for path in latest[day]:
            try:
                snapshots.append(read_snapshot(path))
            except SnapshotError:
                troubled.add(day)
    tables, accepted, held = accept([s for s in snapshots if s.snapshot_date not in troubled])
    if held:
        by_path = {s.path: s.snapshot_date for s in snapshots}
        troubled |= {by_path[h.path] for h in held if h.path in by_path}
        tables, accepted, _ = accept([s for s in accepted if s.snapshot_date not in troubled])
    rows = [len(s.output1) for s in accepted]
    dated = {
        "asset_categories": arrays.dates(
            [s.snapshot_date for s, n in zip(accepted, rows, strict=True) for _ in range(n)]
        ),
        "account_summary": arrays.dates([s.snapshot_date for s in accepted]),
    }
    return Batch(
        {name: table.append_column(checks.DAY, dated[name]) for name, table in tables.items()},
        accepted,
        troubled,
    )


def _by_day(table: pa.Table, days: list[date]) -> dict[date, pa.Table]:
    """A batch table (in day order) split into each day's rows, without the day column."""
    values, counts_of = pc.value_counts(table[checks.DAY]).flatten()
    counts = dict(zip(values.to_pylist(), counts_of.to_pylist(), strict=True))
    split, offset = {}, 0
    for day in days:
        n = counts.get(day, 0)
        split[day] = table.slice(offset, n).drop_columns([checks.DAY])
        offset += n
    return split


def build_days(data_root: DataRoot | Storage, days: list[date]) -> TidyResult:
    """Flatten and check every day from its landed raw files; write unless a check blocks.

    Days whose newest answers are all good are flattened and checked as one batch; a day with
    a withheld answer goes account by account (`day_tables`). Each day is built under its lock
    (Storage.lock: every process on a local root; in object storage, one machine's processes,
    and Dagster's run concurrency across machines).
    """
    storage = open_root(data_root)
    landing, store = RawLanding(storage), ParquetTables(storage)
    latest = {day: landing.latest_files(day) for day in days}
    missing = [day for day in days if not latest[day]]
    if missing:
        raise MissingRawError(
            f"No raw balance landed for {', '.join(map(str, missing))}: nothing to rebuild "
            "those days from (KIS reports only the current balance). Materialize kis_balance_raw "
            "for them first, or leave them out of the range."
        )
    result = TidyResult(days=sorted(days))
    merged = {(c.table, c.name): checks.Outcome(c) for c in checks.CHECKS}

    def merge(outcomes: list[checks.Outcome], prefix: str = "") -> set[tuple[Any, ...]]:
        for outcome in outcomes:
            merged[(outcome.check.table, outcome.check.name)].problems += [
                prefix + text for text in outcome.problems
            ]
        return set().union(*(o.withheld for o in outcomes))

    with contextlib.ExitStack() as stack:
        for day in result.days:  # in date order, so two runs never wait on each other in a cycle
            stack.enter_context(storage.lock(f"tidy-{day}"))
        written: dict[date, dict[str, pa.Table]] = {}
        # a month of days at a time: the answers' JSON is let go once its tables are built
        for start in range(0, len(result.days), BATCH_DAYS):
            chunk = result.days[start : start + BATCH_DAYS]
            existing = {name: [store.path(name, d) for d in chunk] for name in schema.TABLES}
            batch = _batch(latest, chunk)
            late = merge(
                checks.run(batch.snapshots, batch.tables, existing=existing, damaged=result.damaged)
            )
            batch_days = [d for d in chunk if d not in batch.troubled]
            split = {
                name: _by_day(_without(table, late), batch_days)
                for name, table in batch.tables.items()
            }
            written |= {day: {name: split[name][day] for name in split} for day in batch_days}
            for key in late:
                result.withheld.setdefault(" ".join(map(str, key)), "duplicate rows")
            for day in sorted(batch.troubled):
                built = day_tables(landing, day)
                late = merge(
                    checks.run(
                        built.snapshots,
                        built.tables,
                        withheld=built.withheld,
                        existing={name: [store.path(name, day)] for name in schema.TABLES},
                        damaged=result.damaged,
                    ),
                    prefix=f"{day}: ",
                )
                written[day] = {name: _without(t, late) for name, t in built.tables.items()}
                for held in built.withheld:
                    result.withheld.setdefault(f"{day} {held.account_id}", held.reason)
                for key in late:
                    result.withheld.setdefault(f"{day} {key[-1]}", "duplicate rows")
        for day in result.days:
            _keep_rows_of_withheld(store, day, written, result)
            tables = written[day]
            result.accounts.update(tables["account_summary"]["account_id"].to_pylist())
            for name, table in tables.items():
                result.tables.setdefault(name, []).append(table)
        result.outcomes = list(merged.values())
        if result.blocked:
            return result
        files = {(name, day): written[day][name] for day in result.days for name in written[day]}
        for (name, _), location in zip(files, store.write_many(files), strict=True):
            result.written.setdefault(name, []).append(location)
        # what was written, as its files are now (under the locks): compaction reads these
        # from memory, unless another run rewrites a day first
        fresh = {
            (name, day): (fingerprint, files[(name, day)])
            for name in schema.TABLES
            for day, fingerprint in store.fingerprints(name).items()
            if (name, day) in files
        }
    # after the day locks: a closed month that changed (or just closed) becomes one file again
    months = CompactedMonths(storage)
    result.compacted = months.refresh(today_in_seoul(), fresh)
    result.damaged += months.found
    return result


def _keep_rows_of_withheld(
    store: ParquetTables, day: date, written: dict[date, dict[str, pa.Table]], result: TidyResult
) -> None:
    """Each account withheld on `day` with no answer of the day to take instead keeps the rows
    it has in the day's files (`_keep_previous`); its reason says what the day keeps."""
    prefix = f"{day} "
    held = {key.removeprefix(prefix) for key in result.withheld if key.startswith(prefix)}
    if not held:
        return
    written[day], kept = _keep_previous(store, day, written[day], held, result.damaged)
    for account, tables in kept.items():
        fetched = ", ".join(sorted(set(tables.values())))
        if len(tables) == len(written[day]):
            fate = f"; the day keeps the rows it had, fetched {fetched}"
        elif tables:
            lost = sorted(set(written[day]) - set(tables))
            fate = (
                f"; the day keeps its {', '.join(sorted(tables))} rows, fetched {fetched}; its "
                f"{', '.join(lost)} rows could not be read: lost"
            )
        else:
            fate = "; the account has no rows for the day"
        result.withheld[prefix + account] += fate
