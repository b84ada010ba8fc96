"""The notification settings (KIS_NOTIFY*, KIS_HEALTHCHECK_URL), parsed on their own from the
environment and the settings files (kis.env): one function, one frozen dataclass."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pipelines import env_values
from pipelines.errors import ConfigError

ACCOUNT_MODES = ("masked", "full")
DEFAULT_CLOSING_MINUTES = 60.0
DEFAULT_TICK_SECONDS = 30
#: A new URL starts where a scheme follows a comma or a blank (a comma inside a URL, as in
#: mailto's `to=a@x,b@y`, stays in it).
URL_SPLIT = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class NotifySettingsError(ConfigError):
    """A KIS_NOTIFY* or KIS_HEALTHCHECK_URL value that cannot be used; the message names it
    (never the URL itself: it may hold a token)."""


@dataclass(frozen=True)
class NotifySettings:
    """Where to tell (Apprise URLs), what, and when; nothing is sent while `urls` is empty."""

    #: KIS_NOTIFY: Apprise URLs; they may hold tokens and passwords, so never shown.
    urls: tuple[str, ...] = field(default=(), repr=False)
    #: KIS_NOTIFY_ACCOUNTS=full: whole account numbers in messages (default: masked).
    full_accounts: bool = False
    #: KIS_NOTIFY_DIGEST=1: a digest once the day is complete.
    digest: bool = False
    #: KIS_HEALTHCHECK_URL: a GET after each complete capture day (may hold a token).
    healthcheck_url: str | None = field(default=None, repr=False)
    #: KIS_NOTIFY_CLOSING_MINUTES: how long before the window's end to warn of missing accounts.
    closing_minutes: float = DEFAULT_CLOSING_MINUTES
    #: KIS_NOTIFY_TICK: seconds between the notification sensors' ticks.
    tick_seconds: int = DEFAULT_TICK_SECONDS

    @property
    def sends(self) -> bool:
        return bool(self.urls)

    @property
    def active(self) -> bool:
        """Anything to do at all: messages or the healthcheck ping."""
        return bool(self.urls or self.healthcheck_url)


def parse(values: Mapping[str, str]) -> NotifySettings:
    urls = tuple(u for u in URL_SPLIT.split((values.get("KIS_NOTIFY") or "").strip()) if u)
    for number, url in enumerate(urls, start=1):
        if "://" not in url:
            raise NotifySettingsError(
                f"KIS_NOTIFY entry {number}: expected an Apprise URL such as "
                "tgram://bottoken/chatid or mailtos://user:password@example.com"
            )
    mode = (values.get("KIS_NOTIFY_ACCOUNTS") or "masked").strip().lower()
    if mode not in ACCOUNT_MODES:
        raise NotifySettingsError(
            f"KIS_NOTIFY_ACCOUNTS={mode!r}: expected masked (the default) or full"
        )
    digest = (values.get("KIS_NOTIFY_DIGEST") or "0").strip().lower()
    if digest not in ("0", "1", "true", "false", "yes", "no"):
        raise NotifySettingsError(f"KIS_NOTIFY_DIGEST={digest!r}: expected 1 or 0")
    healthcheck = (values.get("KIS_HEALTHCHECK_URL") or "").strip() or None
    if healthcheck and (
        urlsplit(healthcheck).scheme not in ("http", "https") or not urlsplit(healthcheck).hostname
    ):
        raise NotifySettingsError(
            "KIS_HEALTHCHECK_URL: expected an http(s) URL, e.g. https://hc-ping.com/<uuid>"
        )
    try:
        closing = _minutes(values, "KIS_NOTIFY_CLOSING_MINUTES")
        tick = env_values.count(values, "KIS_NOTIFY_TICK", DEFAULT_TICK_SECONDS, maximum=600)
    except env_values.EnvValueError as error:
        raise NotifySettingsError(str(error)) from None
    return NotifySettings(
        urls=urls,
        full_accounts=mode == "full",
        digest=digest in ("1", "true", "yes"),
        healthcheck_url=healthcheck,
        closing_minutes=closing,
        tick_seconds=max(tick, 5),
    )


def _minutes(values: Mapping[str, str], name: str) -> float:
    """Minutes from 0 (only when the window closes) to a day; decimals allowed."""
    text = (values.get(name) or "").strip()
    if not text:
        return DEFAULT_CLOSING_MINUTES
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not 0 <= minutes <= 24 * 60:  # also refuses nan
        raise env_values.EnvValueError(
            f"{name}={text!r}: expected minutes before the window's end, from 0 to 1440 "
            f"(decimals allowed), e.g. {DEFAULT_CLOSING_MINUTES:g}"
        )
    return minutes
