"""When the capture window's messages are due: shortly before its end with accounts missing,
and once it has closed (plain time arithmetic on pipelines.ingest.capture's settings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pipelines.ingest.capture import CaptureSettings, seoul_day

#: A closed window is still told of this long after its end (a daemon that was down at the
#: close tells when it is back, not days later).
CLOSED_TELL_WITHIN = timedelta(hours=12)
#: How long after the close the closed message waits for a run still in flight.
CLOSED_WAIT_FOR_RUN = timedelta(minutes=10)


@dataclass(frozen=True)
class WindowMoment:
    day: date
    closes: datetime
    closed: bool


def due(settings: CaptureSettings, now: datetime, closing_minutes: float) -> WindowMoment | None:
    """The day whose window is about to close (within `closing_minutes`) or closed lately."""
    today = seoul_day(now)
    if settings.is_capture_day(today):
        closes = settings.window.closes(today)
        warn_from = max(closes - timedelta(minutes=closing_minutes), settings.window.opens(today))
        if warn_from <= now < closes and closing_minutes > 0:
            return WindowMoment(today, closes, closed=False)
    last = settings.last_closed_day(now)
    closes = settings.window.closes(last)
    if now - closes < CLOSED_TELL_WITHIN:
        return WindowMoment(last, closes, closed=True)
    return None


def wait_for_run(moment: WindowMoment, now: datetime, tick_seconds: float) -> bool:
    """Whether a message waits for a run of the day still in flight, to tell its outcome: the
    warning until two ticks before the close, the closed message for ten minutes after it (a
    hung run never keeps either from being told)."""
    if moment.closed:
        return now - moment.closes < CLOSED_WAIT_FOR_RUN
    return moment.closes - now > timedelta(seconds=2 * tick_seconds)
