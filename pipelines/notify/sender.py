"""Sending: messages through Apprise (one URL per service), and the healthcheck ping. Neither
ever raises: what failed is returned, to be logged."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from pipelines.notify.messages import Message, Redactor

log = logging.getLogger(__name__)

#: Seconds: connecting and answering, for the ping (a dead man's switch must not hang a tick).
PING_TIMEOUT = (5.0, 10.0)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str = ""


def _scheme(url: str) -> str:
    return (urlsplit(url).scheme or "?") + "://…"


def send(urls: Sequence[str], message: Message, redact: Redactor) -> Outcome:
    """Send to every URL; ok only if each one took it. URLs are named by scheme only (they
    hold tokens), and Apprise's own log lines are scrubbed of them."""
    import apprise  # here: 0.2 s that every run's process would pay at import, unused

    scrub = Redactor(redact.accounts, (*redact.secrets, *urls, *_parts(urls)), redact.full)
    notifier = apprise.Apprise()
    problems = [
        f"KIS_NOTIFY entry {number} ({_scheme(url)}) is not a URL Apprise knows"
        for number, url in enumerate(urls, start=1)
        if not notifier.add(url)
    ]
    if len(notifier) == 0:
        return Outcome(False, "; ".join(problems) or "no notifier configured")
    try:
        with apprise.LogCapture(level=logging.WARNING) as captured:
            delivered = bool(
                notifier.notify(
                    title=message.title, body=message.body, body_format=apprise.NotifyFormat.TEXT
                )
            )
            lines = [scrub(line.strip()) for line in captured.getvalue().splitlines()]
    except Exception as error:  # a notifier's bug must not stop the sensor
        delivered, lines = False, [scrub(f"{type(error).__name__}: {error}")]
    if not delivered:
        problems.append("not every notifier took the message: " + " | ".join(lines[-5:]))
    return Outcome(not problems, "; ".join(problems))


def _parts(urls: Sequence[str]) -> list[str]:
    """The user, password, host-less tokens and path segments of the URLs (what a log line of
    Apprise's may repeat on its own)."""
    parts: list[str] = []
    for url in urls:
        split = urlsplit(url)
        parts += [p for p in (split.netloc, split.username, split.password) if p]
        parts += [segment for segment in split.path.split("/") if len(segment) >= 8]
    return parts


def ping(url: str) -> Outcome:
    """GET the healthcheck URL (healthchecks.io, Uptime Kuma, cronitor)."""
    try:
        response = requests.get(url, timeout=PING_TIMEOUT)
    except requests.RequestException as error:
        return Outcome(False, f"healthcheck ping failed: {type(error).__name__}")
    if response.status_code >= 400:
        return Outcome(False, f"healthcheck ping answered HTTP {response.status_code}")
    return Outcome(True)
