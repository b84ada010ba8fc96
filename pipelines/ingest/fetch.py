"""The fetch step: decide what a day's partition may do, then fetch and land every account.

KIS only ever reports the balance as of now. Today's partition fetches live; a past day is
rebuilt from what was landed on it; only the simulator can answer for a past day. An answer
that fails its account is kept in quarantine; one the data root refuses is kept on this
machine and landed by the next run.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from pipelines.errors import (
    FutureDayError,
    KisBalanceError,
    KisDeadlineError,
    KisError,
    KisUnreachableError,
    LandingError,
    MissingRawError,
    StoreUnreachableError,
)
from pipelines.ingest.landing import PendingAnswers, RawLanding
from pipelines.kis import answers, ratelimit
from pipelines.kis.client import BalanceResponse, Credentials, KisClient
from pipelines.kis.protocol import Account, CorporateIdentity, KisApiError, said_of
from pipelines.kis.tokens import SEOUL, TokenCache
from pipelines.storage.roots import Location

log = logging.getLogger(__name__)

EMBEDDED_SERVER_ID = "kis-simulator:embedded"


@dataclass(frozen=True)
class Server:
    """The server a run fetches from: its URL, and the name its tokens are cached under."""

    base_url: str
    server_id: str


class NoServerError(KisBalanceError, RuntimeError):
    """The settings name the embedded simulator, and the caller did not start it."""


class FetchSettings(Protocol):
    """What fetching needs of the configuration (pipelines.settings.Settings has it)."""

    @property
    def env(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...  # None: the embedded simulator
    @property
    def credentials(self) -> Credentials: ...
    @property
    def custtype(self) -> str: ...
    @property
    def corporate(self) -> CorporateIdentity | None: ...
    @property
    def rate_limit(self) -> float: ...
    @property
    def keys_in_flight(self) -> int: ...
    @property
    def request_deadline(self) -> float: ...
    @property
    def account_budget(self) -> float: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    @property
    def is_simulated(self) -> bool: ...
    def key_groups(self) -> list[tuple[Credentials, tuple[Account, ...]]]: ...


class DayAction(enum.Enum):
    FETCH_LIVE = "fetch live (today's partition)"
    FETCH_SIMULATED_PAST = "ask the simulator for a past day"
    REBUILD_FROM_RAW = "rebuild from landed raw JSON"


def today_in_seoul(now: datetime | None = None) -> date:
    return (now or datetime.now(SEOUL)).astimezone(SEOUL).date()


def plan_day(day: date, *, today: date, simulated: bool, landed: bool) -> DayAction:
    if day > today:
        raise FutureDayError(f"{day} is in the future (today in Asia/Seoul is {today})")
    if day == today:
        return DayAction.FETCH_LIVE
    if landed:
        return DayAction.REBUILD_FROM_RAW
    if simulated:
        return DayAction.FETCH_SIMULATED_PAST
    raise MissingRawError(
        f"No raw balance was landed for {day}, so that day cannot be built: KIS reports only "
        f"the current balance (today is {today} in Asia/Seoul), and filing it under {day} "
        "would be wrong. Past days can only be rebuilt from raw JSON landed on the day itself."
    )


def plan_days(
    days: list[date], *, today: date, simulated: bool, landing: RawLanding
) -> dict[date, DayAction]:
    """Each day's action, or, before anything is fetched, one error naming every day that
    cannot be built."""
    plans: dict[date, DayAction] = {}
    missing: list[tuple[date, MissingRawError]] = []
    for day in days:
        try:
            plans[day] = plan_day(
                day, today=today, simulated=simulated, landed=bool(landing.latest_files(day))
            )
        except MissingRawError as error:
            missing.append((day, error))
    if len(missing) == 1:
        raise missing[0][1]
    if missing:
        raise MissingRawError(
            f"No raw balance was landed for {', '.join(str(d) for d, _ in missing)}: KIS "
            "reports only the current balance, so those days cannot be built; leave them out."
        )
    return plans


def configured_server(settings: FetchSettings, server: Server | None = None) -> Server:
    """`server` when given (the embedded simulator the caller started), else KIS_BASE_URL's.

    The fetch path never starts the simulator itself: the `kis` resource decides that."""
    if server is not None:
        return server
    if settings.base_url is None:
        raise NoServerError(
            "the embedded simulator is the server (KIS_BASE_URL unset in simulator mode) and it "
            "was not started: pass the Server the kis resource (assets/resources.py) started"
        )
    return Server(settings.base_url, settings.base_url)


def open_client(
    settings: FetchSettings,
    credentials: Credentials | None = None,
    token_cache: TokenCache | None = None,
    *,
    server: Server | None = None,
) -> KisClient:
    """A client for the server (see `configured_server`) and one app key (the default one
    unless given)."""
    server = configured_server(settings, server)
    credentials = credentials or settings.credentials
    return KisClient(
        server.base_url,
        credentials,
        token_cache=token_cache or TokenCache(),
        custtype=settings.custtype,
        corporate=settings.corporate,
        server_id=server.server_id,
        rate_limiter=ratelimit.for_app_key(credentials.app_key, settings.rate_limit),
        request_deadline=settings.request_deadline,
        account_budget=settings.account_budget,
        max_body_bytes=settings.max_body_bytes,
    )


def describe_source(settings: FetchSettings) -> dict[str, Any]:
    """What a landed file and the run's metadata say about where the data came from."""
    server = settings.base_url or "embedded simulator (loopback)"
    return {"env": settings.env, "server": server, "simulated": settings.is_simulated}


@dataclass
class LandingReport:
    landed: list[Location] = field(default_factory=list)
    #: By account: the KisError that failed its fetch, or the LandingError that kept its answer
    #: from the data root.
    failures: dict[str, KisError | LandingError] = field(default_factory=dict)
    #: By account: where the answer that failed it was kept (raw/quarantine/...).
    quarantined: dict[str, Location] = field(default_factory=dict)
    #: Retries, token issuances and waits, summed over every client of the run.
    events: Counter[str] = field(default_factory=Counter)


def land_pending(landing: RawLanding) -> list[Location]:
    """Land the answers earlier runs fetched but could not land (see PendingAnswers)."""
    return PendingAnswers(landing.storage).land_all()


def _quarantine(
    landing: RawLanding,
    account: Account,
    day: date,
    error: KisError,
    source: dict[str, Any],
    client: KisClient,
) -> Location | None:
    """Keep the answer that failed the account; a failure to keep it is only logged (the
    account's own error is what the run reports)."""
    try:
        where = landing.quarantine(
            account, day, error, source=source, secrets=client.secret_values()
        )
    except (OSError, StoreUnreachableError) as failure:
        log.error("account %s: its answer could not be kept in quarantine: %s", account, failure)
        return None
    log.warning("account %s: the answer that failed it is kept at %s", account, where)
    return where


def _land_or_keep(
    landing: RawLanding, response: BalanceResponse, day: date, source: dict[str, Any]
) -> Location:
    """Land the answer; if the data root refuses it (a full disk, a store that does not
    answer), keep it on this machine for the next run and raise a LandingError naming the
    account, the file, why, and where the answer is (or that it could not be kept)."""
    key, data = landing.prepare(response, day, source=source)
    try:
        return landing.storage.write_bytes(key, data, overwrite=False)
    except FileExistsError:
        raise
    except (OSError, StoreUnreachableError) as error:
        refused = f"account {response.account.id}: could not land its answer at "
        refused += f"{landing.storage.location(key)}: {error}"
        try:
            kept = PendingAnswers(landing.storage).keep(key, data)
        except OSError as also:
            raise LandingError(
                f"{refused}; it could not be kept on this machine either ({also}), so it is "
                "lost: fetch again once there is room"
            ) from error
        raise LandingError(
            f"{refused}; the answer is kept at {kept} and landed by the next run"
        ) from error


def fails_the_key(error: KisError, client: KisClient) -> bool:
    """Whether the key's other accounts would meet the same failure: an answer about the key or
    its token, a server that cannot be reached, or one that has answered nothing at all."""
    if isinstance(error, KisApiError):
        return answers.fails_every_account_of_the_key(error.msg_cd)
    if isinstance(error, KisUnreachableError):
        return True
    return isinstance(error, KisDeadlineError) and error.silent and not client.answered


def for_every_account(error: KisError, app_key: str, accounts: tuple[Account, ...]) -> KisError:
    """`error`, said of every account of one app key (the same failure for each): one line
    naming the key by its last four characters and its accounts."""
    who = f"app key …{app_key[-4:]} (account{'s' if len(accounts) > 1 else ''} "
    who += f"{', '.join(account.id for account in accounts)})"
    return said_of(error, who)


def fetch_and_land(
    settings: FetchSettings,
    landing: RawLanding,
    day: date,
    *,
    sim_as_of: date | None = None,
    token_cache: TokenCache | None = None,
    server: Server | None = None,
) -> LandingReport:
    """Fetch every account and land each answer as it arrives.

    App keys are fetched side by side (at most `settings.keys_in_flight` at once), each paced
    by its own limiter and token; one key's accounts go one after another, each within its
    time budget. One account's failure is recorded and the others go on: what they land is
    kept. An answer that failed its account is kept in quarantine; answers kept by an earlier
    run that could not land them are landed first. A store that does not answer stops the
    fetch (StoreUnreachableError: every later write would wait as long). `server`: the
    embedded simulator when the caller started it (see `configured_server`).
    """
    land_pending(landing)
    source = describe_source(settings)
    if sim_as_of:
        source["as_of"] = sim_as_of.isoformat()
    clients = [
        (open_client(settings, credentials, token_cache, server=server), accounts)
        for credentials, accounts in settings.key_groups()
    ]

    def fetch_key(client: KisClient, accounts: tuple[Account, ...]) -> LandingReport:
        part = LandingReport()
        failed_key: KisError | None = None
        try:  # one token for the key's accounts: a refusal is every account's, said once
            client.access_token()
        except KisError as error:
            failed_key = for_every_account(error, client.credentials.app_key, accounts)
            log.error("%s", failed_key)
        for account in accounts:
            if failed_key is not None:
                part.failures[account.id] = failed_key
                continue
            try:
                response = client.inquire_account_balance(account, sim_as_of=sim_as_of)
            except KisError as error:
                if error.answer is not None:
                    where = _quarantine(landing, account, day, error, source, client)
                    if where is not None:
                        part.quarantined[account.id] = where
                if fails_the_key(error, client) and len(accounts) > 1:
                    failed_key = for_every_account(error, client.credentials.app_key, accounts)
                    error = failed_key
                log.error("%s", error)
                part.failures[account.id] = error
                continue
            try:
                part.landed.append(_land_or_keep(landing, response, day, source))
            except LandingError as error:
                log.error("%s", error)
                part.failures[account.id] = error
                if isinstance(error.__cause__, StoreUnreachableError):
                    raise
        part.events.update(client.events)
        return part

    workers = min(len(clients), settings.keys_in_flight)
    if workers <= 1:
        parts = [fetch_key(*pair) for pair in clients]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="kis-key") as pool:
            parts = list(pool.map(lambda pair: fetch_key(*pair), clients))
    report = LandingReport()
    for part in parts:  # in configuration order, whatever finished first
        report.landed += part.landed
        report.failures.update(part.failures)
        report.quarantined.update(part.quarantined)
        report.events.update(part.events)
    return report
