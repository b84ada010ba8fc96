"""The data root's health: the run's warehouse build that heals what it finds damaged, and
`make verify` / `make repair` (also the Dagster job `repair_history`).

Raw answers are the source of truth; daily Parquet files, compacted months and the warehouse
are derived from them. `verify` reads every raw answer and every Parquet file whole, and opens
every view; `repair` rebuilds every derived file that is damaged or missing, then verifies. A
damaged raw answer is never rewritten or removed: `repair` records that it has dealt with it
(raw/known-damage/), and `verify` then lists it as a note while its bytes stay as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import duckdb

from pipelines.ingest import capture
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding, read_envelope
from pipelines.kis.protocol import BALANCE_TR_ID
from pipelines.lake import parquet, schema
from pipelines.lake.compaction import CompactedMonths, month_of
from pipelines.lake.tables import ParquetTables
from pipelines.settings import Settings
from pipelines.storage.damage import MISSING, Damage, DamagedFileError
from pipelines.storage.roots import Location, Storage, open_root
from pipelines.tidy import heal
from pipelines.warehouse import targets as targets_module
from pipelines.warehouse import view_check, warehouse

#: Files read at once by verify (object storage answers each read in tens of milliseconds).
READERS = 8
#: raw/CTRP6548R/snapshot_date=YYYY-MM-DD/<account>/<time>.json
RAW_FILE = re.compile(r"snapshot_date=(?P<day>\d{4}-\d{2}-\d{2})/(?P<account>[^/]+)/[^/]+\.json$")
#: Where answers that were not a success are kept (never read as answers).
QUARANTINE = "raw/quarantine"
#: Where `repair` records each damaged raw answer it has dealt with, under the answer's own
#: relative name: raw/known-damage/CTRP6548R/snapshot_date=D/<account>/<time>.json.
KNOWN_DAMAGE = "raw/known-damage"
T = TypeVar("T")


@dataclass(frozen=True)
class Built:
    """A warehouse built by a run, and the damaged files healed to build it."""

    path: Path
    healed: list[Damage] = field(default_factory=list)


def build_warehouse(settings: Settings, accounts: Sequence[str] | None = None) -> Built:
    """Build the warehouse as a run does (targets, the capture calendar of `accounts`, default
    the settings' accounts); when a view fails on damaged derived files, heal them (tidy/heal.py)
    and build again. ViewError (naming the view and the file) if a view still fails, or
    CannotHealError if a file cannot be rebuilt."""
    targets = targets_module.load(settings.targets_file) if settings.targets_file else None
    landing = RawLanding(settings.data_root)
    calendar = capture.CaptureCalendar(
        settings.capture,
        capture.history_start(settings.capture, landing, today_in_seoul()),
        tuple(accounts if accounts is not None else (a.id for a in settings.accounts)),
    )
    healed: list[Damage] = []
    while True:
        try:
            path = warehouse.build(
                settings.data_root, targets, path=settings.warehouse, capture=calendar
            )
            return Built(path, healed)
        except view_check.ViewError as error:
            # each pass heals other files, or fails: a file healed once and damaged again
            # is not healed twice
            again = {d.path for d in healed} & {str(e.path) for e in error.damaged}
            if not error.damaged or again:
                raise
            try:
                healed += heal.heal(settings.data_root, error.damaged)
            except heal.CannotHealError as cannot:
                raise view_check.ViewError(error.views, cannot.reason, [cannot]) from cannot


@dataclass(frozen=True)
class Finding:
    """A damaged or missing file of the data root, what depends on it, and what repair does."""

    path: str
    kind: str
    #: Why it is damaged; None when it is missing.
    damage: str | None
    used_by: str
    remedy: str
    #: Whether `repair` rebuilds it (a raw answer never is).
    repairable: bool
    #: A raw answer's key under the data root and the SHA-256 of its bytes as verify read them.
    raw_key: str | None = None
    sha256: str | None = None

    @property
    def problem(self) -> str:
        return f"damaged ({self.damage})" if self.damage is not None else "missing"

    def __str__(self) -> str:
        return (
            f"{self.kind.upper()} {self.problem}: {self.path}\n"
            f"  used by: {self.used_by}\n  repair: {self.remedy}"
        )


@dataclass
class Verified:
    findings: list[Finding] = field(default_factory=list)
    #: What was read, for the summary line.
    counts: dict[str, int] = field(default_factory=dict)
    #: Worth knowing, not wrong (answers kept in quarantine, months not compacted yet).
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 nothing damaged or missing (damaged raw answers `repair` has dealt with are
        notes); 1 something `repair` rebuilds; 2 only what it cannot (a damaged raw answer
        that no repair has dealt with yet, a damaged day without raw answers)."""
        if any(f.repairable for f in self.findings):
            return 1
        return 2 if self.findings else 0

    def summary(self) -> str:
        read = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        if not self.findings:
            return f"verify: nothing damaged or missing ({read})"
        repairable = sum(f.repairable for f in self.findings)
        return f"verify: {len(self.findings)} damaged or missing ({read}); " + (
            f"{repairable} rebuilt by `make repair`"
            if repairable
            else "none of them can be rebuilt (see each)"
        )


def verify(settings: Settings, *, today: date | None = None) -> Verified:
    """Read every raw answer and every Parquet file under the data root whole, and open every
    view of the warehouse; each damaged or missing file is a Finding."""
    storage = open_root(settings.data_root).absolute()
    today = today or today_in_seoul()
    result = Verified()
    raw_days = _verify_raw(storage, result)
    _verify_daily(storage, raw_days, today, result)
    _verify_compacted(storage, today, result)
    _verify_warehouse(settings, result)
    return result


def _read_all(items: Sequence[T], read: Callable[[T], None]) -> list[tuple[T, DamagedFileError]]:
    """`read` each item side by side; the items whose read found them damaged."""

    def attempt(item: T) -> DamagedFileError | None:
        try:
            read(item)
        except DamagedFileError as error:
            return error
        return None

    with ThreadPoolExecutor(READERS) as pool:
        errors = list(pool.map(attempt, items))
    return [(item, error) for item, error in zip(items, errors, strict=True) if error is not None]


def _verify_raw(storage: Storage, result: Verified) -> dict[date, int]:
    """Every landed answer; returns the days with answers and how many accounts each."""
    base = f"raw/{BALANCE_TR_ID}/"
    answers: dict[tuple[date, str], list[str]] = defaultdict(list)
    for key in storage.files(base):
        found = RAW_FILE.search(key)
        if found:
            answers[(date.fromisoformat(found["day"]), found["account"])].append(key)
    keys = sorted(key for group in answers.values() for key in group)
    damaged = dict(_read_all(keys, lambda key: _read_raw(storage, key)))
    result.counts["raw answers"] = len(keys)
    known = 0
    for (day, account), group in sorted(answers.items()):
        group.sort(reverse=True)  # newest first, as the tidy step takes them
        for position, key in enumerate(group):
            if key not in damaged:
                continue
            readable = [k for k in group[position + 1 :] if k not in damaged]
            if position and group[0] not in damaged:
                keeps = f"nothing: the day uses the newer answer {_name(group[0])}"
            elif readable:
                keeps = f"the day keeps the earlier answer {_name(readable[0])}"
            else:
                keeps = "the day keeps the rows the account has in its Parquet files (if any)"
            digest = hashlib.sha256(storage.read_bytes(key)).hexdigest()
            if _known_damage(storage, key) == digest:
                known += 1
                continue
            result.findings.append(
                Finding(
                    path=str(storage.location(key)),
                    kind="raw answer",
                    damage=damaged[key].reason,
                    used_by=f"account {account} on {day}: {keeps}",
                    remedy="none: a raw answer is never rewritten; the account is withheld on "
                    "that day when it is rebuilt (keep a backup of raw/ to restore it from); "
                    "`make repair` records it as dealt with",
                    repairable=False,
                    raw_key=key,
                    sha256=digest,
                )
            )
    if known:
        result.notes.append(
            f"{known} damaged raw answers are known (recorded by `make repair` under "
            f"{KNOWN_DAMAGE}/): each account's day keeps what it had, the bytes are kept as "
            "they are"
        )
    quarantined = len(storage.files(QUARANTINE))
    if quarantined:
        result.notes.append(
            f"{quarantined} answers that were not a success are kept under {QUARANTINE}/ "
            "(for kis-redact; never read as answers)"
        )
    return dict(sorted(Counter(day for day, _ in answers).items()))


def _read_raw(storage: Storage, key: str) -> None:
    read_envelope(storage.location(key))


def _known_damage_key(key: str) -> str:
    return f"{KNOWN_DAMAGE}/{key.removeprefix('raw/')}"


def _known_damage(storage: Storage, key: str) -> str | None:
    """The SHA-256 recorded when `repair` dealt with the damaged raw answer `key`, if it did
    (a record that cannot be read counts as none)."""
    record = _known_damage_key(key)
    if not storage.exists(record):
        return None
    try:
        return str(json.loads(storage.read_bytes(record))["sha256"])
    except (ValueError, KeyError, TypeError):
        return None


def _record_known_damage(storage: Storage, key: str, sha256: str, finding: Finding) -> None:
    """Record that `repair` has dealt with the damaged raw answer `key`: what was wrong, what
    its day keeps, and the SHA-256 of its bytes (a record no longer applies once they change)."""
    record = {
        "answer": key,
        "sha256": sha256,
        "damage": finding.damage,
        "day": finding.used_by,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    storage.write_bytes(_known_damage_key(key), json.dumps(record, ensure_ascii=False).encode())


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _views_of(table: str) -> str:
    return ", ".join(view_check.dependent_views(table, view_check.declared_sources()))


def _verify_daily(
    storage: Storage, raw_days: dict[date, int], today: date, result: Verified
) -> None:
    tables = ParquetTables(storage)
    for table in schema.TABLES:
        days = tables.fingerprints(table)
        day_of = {tables.path(table, day): day for day in days}
        result.counts[f"{table} days"] = len(day_of)
        for location, error in _read_all(list(day_of), parquet.verify):
            result.findings.append(
                _daily_finding(table, day_of[location], location, error.reason, raw_days, today)
            )
        for day in sorted(raw_days.keys() - days.keys()):
            result.findings.append(
                _daily_finding(table, day, tables.path(table, day), None, raw_days, today)
            )


def _daily_finding(
    table: str,
    day: date,
    location: Location,
    reason: str | None,
    raw_days: dict[date, int],
    today: date,
) -> Finding:
    used_by = f"views {_views_of(table)}"
    if month_of(day) < month_of(today):
        used_by += f"; the compacted month compacted/{table}/{day:%Y-%m}.parquet"
    accounts = raw_days.get(day, 0)
    return Finding(
        path=str(location),
        kind="daily file",
        damage=reason,
        used_by=used_by,
        remedy=(
            f"rebuilt from the raw answers of {day} ({accounts} accounts)"
            if accounts
            else f"none: no raw answer of {day} is landed to rebuild it from; restore it from "
            "a backup, or remove it to leave the day out of the views"
        ),
        repairable=bool(accounts),
    )


def _verify_compacted(storage: Storage, today: date, result: Verified) -> None:
    compactor = CompactedMonths(storage)
    count = 0
    sources = {table: compactor.sources(table) for table in schema.TABLES}
    for table in schema.TABLES:
        months = sources[table]
        existing = compactor.compacted_months(table)
        month_of_file = {compactor.path(table, month): month for month in sorted(existing)}
        count += len(month_of_file)
        damaged = dict(_read_all(list(month_of_file), parquet.verify))
        for location, error in damaged.items():
            days = months.get(month_of_file[location], {})
            result.findings.append(
                Finding(
                    path=str(location),
                    kind="compacted month",
                    damage=error.reason,
                    used_by=f"views {_views_of(table)}",
                    remedy=(
                        f"compacted again from its {len(days)} daily files"
                        if days
                        else "removed (its month has no daily files)"
                    ),
                    repairable=True,
                )
            )
        behind = [
            f"{month:%Y-%m}"
            for month, days in sorted(months.items())
            if month < month_of(today)
            and compactor.path(table, month) not in damaged
            and not compactor.is_current(
                table, month, compactor.inputs(table, month, sources), existing
            )
        ]
        if behind:
            result.notes.append(
                f"{table}: closed months not compacted or out of date ({', '.join(behind)}): "
                "the views read their daily files; the next run (or repair) compacts them"
            )
    result.counts["compacted months"] = count


def _verify_warehouse(settings: Settings, result: Verified) -> None:
    path = settings.warehouse
    used_by = "the views (make sql, pipelines.frames, the report, your assets)"
    if not path.is_file():
        result.findings.append(Finding(str(path), "warehouse", None, used_by, "built", True))
        return
    try:
        with warehouse.connect(settings.data_root, path) as con:
            sources = view_check.built_sources(con)
            failing = [
                (view, str(e).splitlines()[0])
                for view, e in view_check.failing_views(con, view_check.view_queries(sources))
            ]
    except duckdb.Error as error:
        failing = [("(all)", f"the file cannot be opened: {str(error).splitlines()[0]}")]
        sources = {}
    result.counts["views"] = len(sources)
    by_reason: dict[str, list[str]] = defaultdict(list)
    for view, reason in failing:
        by_reason[reason].append(view)
    for reason, views in by_reason.items():
        result.findings.append(
            Finding(
                str(path),
                "warehouse",
                f"{'views' if len(views) > 1 else 'view'} {', '.join(views)} fail: {reason}",
                used_by,
                "built again, once the files behind it are rebuilt",
                repairable=True,
            )
        )


@dataclass
class Repaired:
    before: Verified
    #: What was rebuilt, and from what.
    healed: list[Damage]
    after: Verified


def repair(settings: Settings, accounts: Sequence[str] | None = None) -> Repaired:
    """Rebuild every derived file that is damaged or missing (a day's files from its raw
    answers, a compacted month from its daily files), compact closed months, build the
    warehouse, then verify. A damaged raw answer is left as it is, and recorded as dealt with
    once the views are built without it."""
    before = verify(settings)
    storage = open_root(settings.data_root).absolute()
    healed = heal.heal(
        storage,
        [
            DamagedFileError(f.path, f.damage if f.damage is not None else MISSING)
            for f in before.findings
            if f.repairable and f.kind != "warehouse"
        ],
    )
    compactor = CompactedMonths(storage)
    compactor.refresh(today_in_seoul())  # months closed since the last run, or left behind
    healed += heal.heal(storage, [DamagedFileError(d.path, d.reason) for d in compactor.found])
    built = build_warehouse(settings, accounts)
    for finding in before.findings:
        if finding.raw_key is not None and finding.sha256 is not None:
            _record_known_damage(storage, finding.raw_key, finding.sha256, finding)
    return Repaired(before, healed + built.healed, verify(settings))
