"""`make doctor`: one screen of what the pipeline would do now, without changing anything.

    python -m pipelines.commands.doctor               # settings, data root, capture day, tokens
    python -m pipelines.commands.doctor --online      # and one balance request per app key
    python -m pipelines.commands.doctor --online --issue-token   # may ask KIS for a token

The mode, the server, each app key (masked) with its accounts, the data root and its kind
(simulated, real, empty or mixed), today's capture-day status and window, and each key's cached
token (its expiry). `--online` asks the server for one account's balance per app key with a
cached token only: every token KIS issues sends the account holder a KakaoTalk notice, so none
is asked for unless you pass `--issue-token` (the embedded simulator's tokens are free).
Exit status: 0 fine, 1 something needs you (a refused root, an online check that failed),
2 the settings cannot be read. Secrets are never shown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from assets.resources import kis_server
from pipelines.errors import KisError, NoCachedTokenError
from pipelines.ingest import capture, provenance
from pipelines.ingest.fetch import EMBEDDED_SERVER_ID, open_client
from pipelines.ingest.landing import RawLanding
from pipelines.kis import protocol
from pipelines.kis.client import Credentials
from pipelines.kis.tokens import SEOUL, TokenCache
from pipelines.settings import Settings, SettingsError, settings_files
from pipelines.storage.roots import StoreUnreachableError

LABEL_WIDTH = 14


def mask(app_key: str) -> str:
    """An app key as the screen shows it: its length and last four characters only."""
    return f"…{app_key[-4:]} ({len(app_key)} characters)" if len(app_key) > 8 else "(short key)"


def _line(label: str, text: str) -> str:
    return f"{label + ':':<{LABEL_WIDTH}} {text}"


def _server(settings: Settings) -> tuple[str, str]:
    """The server as shown, and as the token cache files tokens under."""
    if settings.base_url is None:
        return "embedded KIS simulator (loopback, nothing leaves this machine)", EMBEDDED_SERVER_ID
    return settings.base_url, settings.base_url


def _mode(settings: Settings) -> str:
    if settings.is_simulated:
        return "sim: the KIS simulator answers, no real account is asked (KIS_ENV=real for yours)"
    return "real: your accounts at KIS"


def _root(settings: Settings) -> tuple[list[str], bool]:
    """The data root's lines, and whether a run would refuse it."""
    try:
        found = provenance.survey(settings.data_root)
    except (OSError, StoreUnreachableError) as error:
        return [_line("Data root", f"{settings.data_root}: cannot be read ({error})")], True
    wanted = provenance.kind_of(settings.is_simulated)
    accounts = "; ".join(
        f"{kind}: {', '.join(ids)}" for kind, ids in sorted(found.accounts.items())
    )
    kind = found.kind + (" (raw/provenance.json)" if found.recorded else "")
    kind += f" ({accounts})" if accounts else ""
    lines = [_line("Data root", str(settings.data_root)), _line("  kind", kind)]
    refused = found.kind not in (provenance.EMPTY, wanted)
    if refused:
        storage = RawLanding(settings.data_root).storage
        lines.append(_line("  REFUSED", provenance.refusal(storage, wanted, found)))
    lines.append(_line("  warehouse", str(settings.warehouse)))
    return lines, refused


def _capture(settings: Settings, now: datetime) -> list[str]:
    calendar, today = settings.capture, capture.seoul_day(now)
    window = (
        f"{calendar.window} {capture.TIME_ZONE}, every {calendar.every.total_seconds() / 60:g} min"
    )
    if not calendar.is_capture_day(today):
        status = f"not a capture day (KIS_CAPTURE_DAYS={calendar.days_text()})"
    elif now < calendar.window.opens(today):
        status = "a capture day; the window has not opened yet"
    elif calendar.in_window(now):
        status = "a capture day; the window is open"
    else:
        status = "a capture day; the window has closed"
    lines = [
        _line("Today", f"{today} ({today.strftime('%a')}) in {capture.TIME_ZONE}: {status}"),
        _line("  window", window),
        _line("  next window", calendar.next_window(now).strftime("%Y-%m-%d %H:%M %Z")),
    ]
    try:
        landed = capture.landed_accounts(RawLanding(settings.data_root), today)
    except (OSError, StoreUnreachableError) as error:
        return [*lines, _line("  landed", f"cannot be read ({error})")]
    configured = [account.id for account in settings.accounts]
    missing = capture.missing_accounts(configured, landed)
    lines.append(
        _line(
            "  landed",
            f"{len(configured) - len(missing)} of {len(configured)} accounts"
            + (f"; missing {', '.join(missing)}" if missing else ""),
        )
    )
    return lines


def _token(cache: TokenCache, server_id: str, credentials: Credentials, now: datetime) -> str:
    token = cache.peek(server_id, credentials.app_key)
    if token is None:
        return "none cached"
    expires = token.expires_at.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M %Z")
    if not token.usable_at(now, cache.margin):
        return f"expired (at {expires}): the next run asks KIS for a new one"
    return f"cached, expires at {expires}"


def _online(
    settings: Settings,
    credentials: Credentials,
    accounts: tuple[str, ...],
    cache: TokenCache,
    issue: bool,
) -> tuple[str, bool]:
    """One balance request for the key's first account: what it answered, and whether it did."""
    # a cached token only, unless told (the embedded simulator's tokens are free)
    read_only = not (issue or settings.base_url is None)
    tokens = TokenCache(cache.directory, read_only=read_only)
    # the embedded simulator started here when it is the server, as the kis resource does
    client = open_client(settings, credentials, tokens, server=kis_server(settings))
    account = next(a for a in settings.accounts if a.id == accounts[0])
    try:
        response = client.inquire_account_balance(account)
    except KisError as error:
        if isinstance(error, NoCachedTokenError):
            return (
                "not asked: no cached token, and issuing one sends the account holder a "
                "KakaoTalk notice; `make run` gets one (cached for a day), or run "
                "`make doctor DOCTOR_ARGS='--online --issue-token'`",
                False,
            )
        return f"FAILED: {error}", False
    total = _total_assets(response.pages[0].body)
    return f"{account.id} answered ({len(response.pages)} page(s)){total}", True


def _total_assets(body: str) -> str:
    """The answer's total assets (output2 tot_asst_amt) in won, if it has them."""
    try:
        summary = protocol.body_key(json.loads(body), "output2")
        summary = summary[0] if isinstance(summary, list) else summary
        return f"; total assets {int(Decimal(str(summary['tot_asst_amt']))):,}원"
    except (ValueError, KeyError, IndexError, TypeError, ArithmeticError):
        return ""


def report(
    settings: Settings,
    *,
    online: bool = False,
    issue: bool = False,
    now: datetime | None = None,
    cache: TokenCache | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Print the screen; the exit status (see the module's docstring)."""
    now = now or datetime.now(SEOUL)
    cache = cache or TokenCache()
    server, server_id = _server(settings)
    say(_line("Mode", _mode(settings)))
    say(_line("Server", server))
    files = [str(path) for path in reversed(settings_files(os.environ)) if path.is_file()]
    read = f"the environment, then {', '.join(files)}" if files else "the environment"
    say(_line("Settings", f"{read} (KIS_* variables)"))
    problems = 0
    for number, (credentials, accounts) in enumerate(settings.key_groups(), start=1):
        ids = tuple(account.id for account in accounts)
        say(_line(f"App key {number}", f"{mask(credentials.app_key)}: {', '.join(ids)}"))
        say(_line("  token", _token(cache, server_id, credentials, now)))
        if online:
            text, fine = _online(settings, credentials, ids, cache, issue)
            say(_line("  online", text))
            problems += not fine
    lines, refused = _root(settings)
    for line in lines:
        say(line)
    for line in _capture(settings, now):
        say(line)
    return 1 if refused or problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.commands.doctor",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument(
        "--online", action="store_true", help="one balance request per app key (cached token)"
    )
    parser.add_argument(
        "--issue-token",
        action="store_true",
        help="with --online: ask KIS for a token where none is cached (a KakaoTalk notice each)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"Settings: {error}", file=sys.stderr)
        return 2
    return report(settings, online=args.online, issue=args.issue_token)


if __name__ == "__main__":
    sys.exit(main())
