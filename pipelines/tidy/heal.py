"""Healing damaged derived files: where it is decided what a damaged file is rebuilt from.

Raw answers are the source of truth; everything else is derived from them and is rebuilt when
it cannot be read: a day's Parquet file from the raw answers of its day (`build_days`, with its
rule that a withheld or damaged answer never erases rows that were good), a compacted month from
its daily files. A damaged raw answer is never rewritten: it is withheld, and its account keeps
the rows it had (build.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.lake import schema
from pipelines.lake.compaction import CompactedMonths
from pipelines.storage.damage import Damage, DamagedFileError
from pipelines.storage.roots import DataRoot, Location, Storage, open_root
from pipelines.tidy.build import build_days

DAILY_FILE = re.compile(
    r"(?:^|/)parquet/(?P<table>\w+)/snapshot_date=(?P<day>\d{4}-\d{2}-\d{2})/data\.parquet$"
)
COMPACTED_FILE = re.compile(r"(?:^|/)compacted/(?P<table>\w+)/(?P<month>\d{4}-\d{2})\.parquet$")


def daily_file(path: Location | str) -> tuple[str, date] | None:
    """(table, day) of a daily Parquet file's path (local, s3:// or a key), else None."""
    found = DAILY_FILE.search(str(path))
    if not found or found["table"] not in schema.TABLES:
        return None
    return found["table"], date.fromisoformat(found["day"])


def compacted_file(path: Location | str) -> tuple[str, date] | None:
    """(table, first day of the month) of a compacted month's path, else None."""
    found = COMPACTED_FILE.search(str(path))
    if not found or found["table"] not in schema.TABLES:
        return None
    return found["table"], date.fromisoformat(found["month"] + "-01")


class CannotHealError(DamagedFileError):
    """A damaged file that nothing can be rebuilt from (a raw answer, or a day without one)."""


def heal(data_root: DataRoot | Storage, damaged: Iterable[DamagedFileError]) -> list[Damage]:
    """Rebuild every damaged derived file, and any other found damaged meanwhile: a day's file
    (both tables of the day) from its raw answers, a compacted month from its daily files.

    Returns what was found and done. CannotHealError for a file that is not derived (a raw
    answer, the warehouse) or a day with no raw answer left to rebuild it from.
    """
    storage = open_root(data_root).absolute()  # the paths the warehouse's views name
    done: dict[str, Damage] = {}
    pending = list(damaged)
    while pending:
        days: dict[date, list[DamagedFileError]] = {}
        months: dict[tuple[str, date], DamagedFileError] = {}
        for error in pending:
            if str(error.path) in done:
                continue
            if (day := daily_file(error.path)) is not None:
                days.setdefault(day[1], []).append(error)
            elif (month := compacted_file(error.path)) is not None:
                months[month] = error
            else:
                raise CannotHealError(
                    error.path, f"{error.reason}; it is not derived, so nothing rebuilds it"
                )
        found: list[Damage] = []
        if days:
            found += _rebuild_days(storage, days, done)
        if months:
            found += _compact_again(storage, months, done)
        # damaged files met meanwhile: a compacted month was compacted again; a day's file
        # (read for its month) is rebuilt in the next pass
        pending = []
        for damage in found:
            if damage.path in done:
                continue
            if daily_file(damage.path) is not None:
                pending.append(DamagedFileError(damage.path, damage.reason))
            else:
                done[damage.path] = damage
    return list(done.values())


def _rebuild_days(
    storage: Storage, days: dict[date, list[DamagedFileError]], done: dict[str, Damage]
) -> list[Damage]:
    landing = RawLanding(storage)
    answers = {day: len(landing.latest_files(day)) for day in days}
    for day, errors in days.items():
        if not answers[day]:
            error = errors[0]
            raise CannotHealError(
                error.path,
                f"{error.reason}; no raw answer of {day} is landed to rebuild it from: restore "
                "the file from a backup, or remove it to leave the day out of the views",
            )
    result = build_days(storage, sorted(days))
    if result.blocked:
        problems = "; ".join(p for o in result.blocked for p in o.problems)
        error = next(iter(days.values()))[0]
        raise CannotHealError(error.path, f"{error.reason}; its day cannot be rebuilt: {problems}")
    for day, errors in days.items():
        withheld = [
            f"{k.split(' ', 1)[1]} ({v})"
            for k, v in result.withheld.items()
            if k.startswith(f"{day} ")
        ]
        action = f"rebuilt from the raw answers of {day} ({answers[day]} accounts)" + (
            f"; withheld: {'; '.join(withheld)}" if withheld else ""
        )
        for error in errors:
            done[str(error.path)] = Damage.of(error, action)
    rebuilt = {str(p) for paths in result.written.values() for p in paths}
    # a damaged file the build replaced is healed; one met elsewhere (compaction) is pending
    return [d for d in result.damaged if d.path not in rebuilt]


def _compact_again(
    storage: Storage, months: dict[tuple[str, date], DamagedFileError], done: dict[str, Damage]
) -> list[Damage]:
    compactor = CompactedMonths(storage)
    written = {str(p) for p in compactor.refresh(today_in_seoul(), rewrite=frozenset(months))}
    for (table, month), error in months.items():
        path = compactor.path(table, month)
        if str(path) in written:
            days = len(compactor.sources(table).get(month, {}))
            action = f"compacted again from its {days} daily files"
        else:  # an open month, no daily files left, or a damaged one: the views read by day
            compactor.storage.remove(compactor.key(table, month))
            action = "removed: the views read its month's daily files"
        done[str(error.path)] = Damage.of(error, action)
    return [d for d in compactor.found if d.path not in done]
