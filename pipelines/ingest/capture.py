"""The capture window: when to ask KIS for today's balance, and which accounts still need it.

Plain Python: parsing of the KIS_CAPTURE_* values, which days are capture days, whether an
instant is inside the window, whether an attempt is due, which accounts still lack today's
snapshot. The capture sensor (assets/automation.py) asks `decide` and does what it says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from pipelines.errors import CaptureSpecError
from pipelines.ingest.landing import RawLanding
from pipelines.kis.tokens import SEOUL

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MINUTES_PER_DAY = 24 * 60
#: KIS_CAPTURE_EVERY below this would hammer the service; the sensor ticks every 5 s at best.
MIN_EVERY = timedelta(seconds=6)
TIME_ZONE = "Asia/Seoul"


@dataclass(frozen=True)
class CaptureWindow:
    """A daily window in Asia/Seoul, as minutes since midnight; `end` may be 1440 (24:00)."""

    start: int = 18 * 60 + 30
    end: int = 23 * 60 + 30

    def opens(self, day: date) -> datetime:
        return datetime.combine(day, time(), SEOUL) + timedelta(minutes=self.start)

    def closes(self, day: date) -> datetime:
        return datetime.combine(day, time(), SEOUL) + timedelta(minutes=self.end)

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True)
class CaptureSettings:
    """When the capture sensor fetches: KIS_CAPTURE_WINDOW, _EVERY, _DAYS, KIS_HISTORY_START."""

    window: CaptureWindow = field(default_factory=CaptureWindow)
    every: timedelta = timedelta(minutes=20)
    #: date.weekday() numbers, 0 = Monday.
    days: frozenset[int] = frozenset(range(5))
    #: The first day of the history (the first partition); None: the first landed day.
    history_start: date | None = None

    def is_capture_day(self, day: date) -> bool:
        return day.weekday() in self.days

    def in_window(self, now: datetime) -> bool:
        day = seoul_day(now)
        return self.is_capture_day(day) and self.window.opens(day) <= now < self.window.closes(day)

    def next_window(self, now: datetime) -> datetime:
        """When the next window opens: today's if it is still ahead, else a later day's."""
        day = seoul_day(now)
        for offset in range(8):
            candidate = day + timedelta(days=offset)
            if self.is_capture_day(candidate) and self.window.opens(candidate) > now:
                return self.window.opens(candidate)
        raise AssertionError("a week always holds a capture day")

    def last_closed_day(self, now: datetime) -> date:
        """The newest capture day whose window has closed by `now`."""
        day = seoul_day(now)
        for offset in range(8):
            candidate = day - timedelta(days=offset)
            if self.is_capture_day(candidate) and self.window.closes(candidate) <= now:
                return candidate
        raise AssertionError("a week always holds a capture day")

    def attempt_number(self, now: datetime) -> int:
        """1 at the window's start, then one more every `every` (only inside the window)."""
        opened = self.window.opens(seoul_day(now))
        return int((now - opened) / self.every) + 1

    def attempt_due_at(self, day: date, number: int) -> datetime:
        return self.window.opens(day) + (number - 1) * self.every

    def capture_days(self, first: date, last: date) -> list[date]:
        return [
            first + timedelta(days=n)
            for n in range((last - first).days + 1)
            if self.is_capture_day(first + timedelta(days=n))
        ]

    def days_text(self) -> str:
        return format_days(self.days)

    def describe(self) -> str:
        every = self.every.total_seconds() / 60
        return (
            f"{self.window} {TIME_ZONE} on {self.days_text()}, "
            f"every {every:g} minute{'s' if every != 1 else ''}"
        )


def seoul_day(now: datetime) -> date:
    return now.astimezone(SEOUL).date()


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- parsing ----------------------------------------------------------------------------------


def parse_window(text: str) -> CaptureWindow:
    """`HH:MM-HH:MM` within one day (Asia/Seoul); the end may be 24:00."""
    start_text, sep, end_text = text.strip().partition("-")
    if not sep:
        raise CaptureSpecError(f"{text!r}: expected HH:MM-HH:MM, e.g. 18:30-23:30")
    start, end = _minutes(start_text, text), _minutes(end_text, text)
    if start >= MINUTES_PER_DAY or not start < end:
        raise CaptureSpecError(
            f"{text!r}: the window must start before it ends, within one day "
            "(00:00-24:00 Asia/Seoul): a day's partition is that day's date in Seoul"
        )
    return CaptureWindow(start, end)


def _minutes(part: str, text: str) -> int:
    hours, sep, minutes = part.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise CaptureSpecError(f"{text!r}: expected HH:MM-HH:MM, e.g. 18:30-23:30")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > MINUTES_PER_DAY:
        raise CaptureSpecError(f"{text!r}: {part.strip()} is not a time of day (00:00-24:00)")
    return value


def parse_every(text: str) -> timedelta:
    """Minutes between attempts; decimals allowed (0.25 is 15 seconds)."""
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not math.isfinite(minutes) or timedelta(minutes=minutes) < MIN_EVERY:
        raise CaptureSpecError(
            f"{text!r}: expected minutes between attempts, e.g. 20 (at least "
            f"{MIN_EVERY.total_seconds() / 60:g}; decimals allowed)"
        )
    return timedelta(minutes=minutes)


def parse_days(text: str) -> frozenset[int]:
    """Day names or ranges, comma-separated: `mon-fri`, `mon-wed,fri`, `sat,sun`, `mon-sun`.

    A range may wrap around the week (`fri-mon` is Friday to Monday).
    """
    days: set[int] = set()
    for item in text.split(","):
        first, sep, last = item.strip().lower().partition("-")
        names = [first, last] if sep else [first]
        for name in names:
            if name not in DAY_NAMES:
                raise CaptureSpecError(
                    f"{text!r}: {name!r} is not a day; expected names from "
                    f"{', '.join(DAY_NAMES)} or ranges such as mon-fri, comma-separated"
                )
        start, end = DAY_NAMES.index(names[0]), DAY_NAMES.index(names[-1])
        days.update((start + n) % 7 for n in range((end - start) % 7 + 1))
    return frozenset(days)


def parse_history_start(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CaptureSpecError(f"{text!r}: expected a date YYYY-MM-DD") from None


def format_days(days: Iterable[int]) -> str:
    """`mon-fri`, `mon-wed,fri`, `mon-sun`: runs of consecutive days as ranges."""
    ordered = sorted(set(days))
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAY_NAMES[run[0]] if len(run) == 1 else f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"
        for run in runs
    )


def cron_weekdays(days: Iterable[int]) -> str:
    """The day-of-week field of a cron expression (0 = Sunday), e.g. `1-5`; `*` for all."""
    numbers = sorted({(day + 1) % 7 for day in days})
    if len(numbers) == 7:
        return "*"
    runs: list[list[int]] = []
    for number in numbers:
        if runs and runs[-1][-1] == number - 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


# -- the data root ----------------------------------------------------------------------------


def first_landed_day(landing: RawLanding) -> date | None:
    """The first day with a landed raw answer, or None if nothing was ever landed."""
    prefix = "snapshot_date="
    days = [name[len(prefix) :] for name in landing.children() if name.startswith(prefix)]
    for text in days:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            continue
        if landing.latest_files(day):
            return day
    return None


def history_start(settings: CaptureSettings, landing: RawLanding, today: date) -> date:
    """The first day of the history: KIS_HISTORY_START, else the first landed day, else today."""
    return settings.history_start or first_landed_day(landing) or today


def landed_accounts(landing: RawLanding, day: date) -> set[str]:
    """Accounts with a landed raw answer for the day: they have that day's snapshot."""
    return {path.parent.name for path in landing.latest_files(day)}


def missing_accounts(accounts: Sequence[str], landed: set[str]) -> list[str]:
    """The configured accounts without a snapshot, in configuration order."""
    return [account for account in accounts if account not in landed]


@dataclass(frozen=True)
class CaptureCalendar:
    """What the warehouse's missed_captures view is built from: the settings, the history's
    first day and the accounts that should be captured on every capture day."""

    settings: CaptureSettings
    first_day: date
    accounts: tuple[str, ...]


# -- the sensor's decision --------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureCursor:
    """The last attempt the sensor requested: the day and the attempt's number, and (when a
    day's fetch is split into shards) the last attempt whose tables and views were built."""

    day: date
    attempt: int
    built: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {"day": self.day.isoformat(), "attempt": self.attempt, "built": self.built}
        )

    @classmethod
    def from_json(cls, text: str | None) -> CaptureCursor | None:
        """The cursor, or None for none or one an older version wrote."""
        try:
            data = json.loads(text or "")
            return cls(
                date.fromisoformat(data["day"]), int(data["attempt"]), int(data.get("built", 0))
            )
        except (ValueError, TypeError, KeyError):
            return None

    def build_due(self, today: date, *, run_in_flight: bool) -> bool:
        """Sharded fetch runs of an attempt have all ended and its day is not built yet."""
        return self.day == today and self.attempt > self.built and not run_in_flight


@dataclass(frozen=True)
class Attempt:
    """A run to request: today's partition, only the accounts still missing."""

    day: date
    number: int
    due_at: datetime
    accounts: tuple[str, ...]

    @property
    def run_key(self) -> str:
        # Dagster launches a run key once per sensor: the attempt is part of it.
        return f"capture-{self.day.isoformat()}-attempt-{self.number}"


@dataclass(frozen=True)
class Decision:
    attempt: Attempt | None
    reason: str
    cursor: CaptureCursor | None


def decide(
    settings: CaptureSettings,
    now: datetime,
    *,
    accounts: Sequence[str],
    landed: Callable[[date], set[str]],
    run_in_flight: bool,
    cursor: CaptureCursor | None,
    first_day: date | None = None,
) -> Decision:
    """What the capture sensor does at `now`: request an attempt, or skip and say why.

    Inside the window of a capture day, an attempt is due at the window's start and then every
    `settings.every`, until every account has the day's snapshot; never while a run of the day
    is still queued or running. Outside it, the reason names the next window and how the last
    capture day ended (`first_day`: days before it are not reported).
    """
    today = seoul_day(now)
    if first_day is not None and today < first_day:
        return Decision(
            None,
            f"The history starts on {first_day} (KIS_HISTORY_START): nothing to capture before.",
            cursor,
        )
    if not settings.in_window(now):
        return Decision(None, _outside(settings, now, accounts, landed, first_day), cursor)
    missing = missing_accounts(accounts, landed(today))
    next_window = _when(settings.next_window(now), now)
    if not missing:
        return Decision(
            None,
            f"All {len(accounts)} accounts have today's snapshot ({today}): nothing more to "
            f"fetch today. Next window: {next_window}.",
            cursor,
        )
    if run_in_flight:
        return Decision(
            None,
            f"A run of {today} is still queued or running; the next attempt waits for it "
            f"(missing: {', '.join(missing)}).",
            cursor,
        )
    number = settings.attempt_number(now)
    if cursor and cursor.day == today and cursor.attempt >= number:
        due = settings.attempt_due_at(today, cursor.attempt + 1)
        closes = settings.window.closes(today)
        later = (
            f"next attempt at {due:%H:%M:%S}"
            if due < closes
            else f"that was the last one: the window closes at {closes:%H:%M}"
        )
        return Decision(
            None,
            f"Attempt {cursor.attempt} for {today} has run without {', '.join(missing)}; {later}.",
            cursor,
        )
    attempt = Attempt(today, number, settings.attempt_due_at(today, number), tuple(missing))
    return Decision(
        attempt,
        f"Attempt {number} for {today} (due {attempt.due_at:%H:%M:%S}): fetching "
        f"{', '.join(missing)}.",
        CaptureCursor(today, number, cursor.built if cursor and cursor.day == today else 0),
    )


def _outside(
    settings: CaptureSettings,
    now: datetime,
    accounts: Sequence[str],
    landed: Callable[[date], set[str]],
    first_day: date | None,
) -> str:
    today = seoul_day(now)
    if not settings.is_capture_day(today):
        days = settings.days_text()
        where = f"{today} ({today:%A}) is not a capture day (KIS_CAPTURE_DAYS={days})"
    elif now < settings.window.opens(today):
        where = f"Today's capture window ({settings.window} {TIME_ZONE}) has not opened yet"
    else:
        where = f"Today's capture window ({settings.window} {TIME_ZONE}) has closed"
    text = f"{where}. Next window: {_when(settings.next_window(now), now)}."
    last = settings.last_closed_day(now)
    if first_day is not None and last < first_day:
        return text
    missing = missing_accounts(accounts, landed(last))
    if missing:
        return (
            f"{text} MISSED on {last}: {', '.join(missing)} had no snapshot when the window "
            "closed; KIS cannot answer for a past day, so that day stays a gap "
            "(view missed_captures)."
        )
    return f"{text} Last capture day {last}: all {len(accounts)} accounts captured."


def _when(moment: datetime, now: datetime) -> str:
    local = moment.astimezone(SEOUL)
    if local.date() == seoul_day(now):
        return f"today {local:%H:%M} {TIME_ZONE}"
    return f"{local:%a %Y-%m-%d %H:%M} {TIME_ZONE}"
