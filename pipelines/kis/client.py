"""KisClient: token issuance and the CTRP6548R balance request over `requests`.

It survives what the real service does under load: tokens are cached and reused (one issuance
per minute per app key is all KIS allows), requests are paced by a per-key rate limiter, and
transient faults (5xx, a gateway's HTML page, connection errors, timeouts, EGW00201) are
retried with exponential backoff and jitter. Business errors are raised at once, by code.
Every request goes through `transport.send` (one origin, no redirects, a deadline, a body
limit), and one account's requests and retries together stay within its time budget.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests

from pipelines.errors import (
    KisBudgetError,
    KisError,
    KisGatewayError,
    KisProtocolError,
    NoCachedTokenError,
)
from pipelines.kis import deadlines, protocol, ratelimit, retry, transport
from pipelines.kis.protocol import Account, CorporateIdentity, KisApiError
from pipelines.kis.ratelimit import RateLimiter
from pipelines.kis.retry import Backoff
from pipelines.kis.tokens import SEOUL, Token, TokenCache
from pipelines.kis.transport import Answer, Origin

log = logging.getLogger(__name__)

TOKEN_EXPIRED = "EGW00123"
TOKEN_INVALID = "EGW00121"
#: Answers that mean the token in use is no good: it is discarded and a new one issued, once.
TOKEN_REFUSED = frozenset({TOKEN_EXPIRED, TOKEN_INVALID})
TOKEN_THROTTLED = "EGW00133"
CONTINUED = frozenset({"F", "M"})
DEFAULT_BACKOFF = Backoff()
DEFAULT_ACCOUNT_BUDGET = 180.0
#: What replaces a secret that a server sent back, wherever it would be shown or kept.
SECRET_REMOVED = "(secret removed)"


@dataclass(frozen=True)
class Credentials:
    app_key: str
    app_secret: str = field(repr=False)


@dataclass(frozen=True)
class Page:
    """One HTTP answer exactly as received: status, the protocol's headers and the body text."""

    status: int
    tr_id: str
    tr_cont: str
    body: str


@dataclass(frozen=True)
class BalanceResponse:
    account: Account
    fetched_at: datetime  # UTC, when the last page arrived
    pages: tuple[Page, ...]


def utc_now() -> datetime:
    return datetime.now(UTC)


class KisClient:
    """Talks to one KIS server (real, or the simulator) with one app key."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        token_cache: TokenCache,
        custtype: str = "P",
        corporate: CorporateIdentity | None = None,
        server_id: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        request_deadline: float = transport.DEFAULT_DEADLINE,
        account_budget: float = DEFAULT_ACCOUNT_BUDGET,
        max_body_bytes: int = transport.DEFAULT_MAX_BODY_BYTES,
        max_pages: int = 20,
        rate_limiter: RateLimiter | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        token_throttle_wait: float = 61.0,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ):
        if custtype == "B" and corporate is None:
            raise ValueError("custtype B (corporate) needs a CorporateIdentity")
        self.base_url = base_url.rstrip("/")
        #: The only scheme, host and port the app key, secret and token are ever sent to.
        self.origin = Origin.of(self.base_url)
        self.credentials = credentials
        self.token_cache = token_cache
        self.custtype = custtype
        self.corporate = corporate
        #: What the token cache files the token under; the base URL unless the server moves.
        self.server_id = server_id or self.base_url
        #: Per socket operation (connect, each read); `request_deadline` bounds a whole request.
        self.timeout = timeout
        self.request_deadline = request_deadline
        #: One account's requests, retries and waits together end within this many seconds.
        self.account_budget = account_budget
        self.max_body_bytes = max_body_bytes
        self.max_pages = max_pages
        self.rate_limiter = rate_limiter or ratelimit.for_app_key(credentials.app_key)
        self.backoff = backoff
        self.token_throttle_wait = token_throttle_wait
        self.clock = clock
        self.sleep = sleep
        self.session = session or requests.Session()
        deadlines.prepare(self.session)
        #: What happened on the way: retries by cause, tokens issued, throttle waits.
        self.events: Counter[str] = Counter()
        #: The token this client last used: reused without reading the cache file again.
        self._token: Token | None = None
        #: Whether the server has answered anything (any HTTP status) since this client began:
        #: until it has, a request it leaves unanswered past the deadline is not tried again.
        self.answered = False
        #: When the current account's budget ends (time.monotonic()), per thread.
        self._local = threading.local()

    def secret_values(self) -> list[str]:
        """The app key, the secret and the token in use (and a corporate key): what must never
        reach a file, a log or another host."""
        values = [self.credentials.app_key, self.credentials.app_secret]
        if self._token is not None:
            values.append(self._token.access_token)
        if self.corporate is not None:
            values.append(self.corporate.personalseckey)
        return [value for value in values if value]

    def _without_secrets(self, error: KisError) -> KisError:
        """`error`, changed in place: any secret a server sent back (quoted in a snippet of its
        body, or in msg1) replaced, since its message goes to logs and the run's metadata."""
        secrets = [value for value in self.secret_values() if len(value) >= 8]
        message = str(error)
        if not any(secret in message for secret in secrets):
            return error
        for secret in secrets:
            message = message.replace(secret, SECRET_REMOVED)
            if isinstance(error, KisApiError):
                error.msg1 = error.msg1.replace(secret, SECRET_REMOVED)
        error.args = (message,)
        return error

    # -- the account's budget ---------------------------------------------------------------
    @contextlib.contextmanager
    def _budget(self) -> Iterator[None]:
        self._local.ends = time.monotonic() + self.account_budget
        try:
            yield
        finally:
            self._local.ends = None

    def _time_left(self) -> float | None:
        """Seconds left of the current account's budget (None outside an account's fetch)."""
        ends: float | None = getattr(self._local, "ends", None)
        return None if ends is None else ends - time.monotonic()

    @property
    def _budget_text(self) -> str:
        return f"the account's {self.account_budget:g} s budget (KIS_ACCOUNT_BUDGET)"

    # -- tokens ---------------------------------------------------------------------------
    def access_token(self) -> str:
        """A cached token if one is still good, else one freshly issued (and cached).

        The cache is locked while issuing, so runs that start together issue one token.
        """
        key = (self.server_id, self.credentials.app_key)
        now = self.clock()
        if self._token is not None and self._token.usable_at(now, self.token_cache.margin):
            return self._token.access_token
        cached = self.token_cache.load(*key, now=now)
        if cached:
            self._token = cached
            return cached.access_token
        with self.token_cache.locked(*key):
            for waits in range(3):
                cached = self.token_cache.load(*key, now=self.clock())  # another run may have won
                if cached:
                    self._token = cached
                    return cached.access_token
                try:
                    token = self._issue_token()
                except KisApiError as error:
                    if error.msg_cd != TOKEN_THROTTLED or waits == 2:
                        raise
                    left = self._time_left()
                    if left is not None and left <= self.token_throttle_wait:
                        raise KisBudgetError(
                            f"{error}; not waiting {self.token_throttle_wait:.0f} s for the next "
                            f"issuance: {self._budget_text} ends first"
                        ) from None
                    log.warning(
                        "token issuance throttled (EGW00133: one per minute per app key); "
                        "waiting %.0f s instead of failing",
                        self.token_throttle_wait,
                    )
                    self.events["token_throttle_waits"] += 1
                    self.sleep(self.token_throttle_wait)
                    continue
                self.token_cache.save(*key, token)
                self._token = token
                return token.access_token
        raise AssertionError("unreachable")

    def _issue_token(self) -> Token:
        what = "token issuance (/oauth2/tokenP)"
        if self.token_cache.read_only:  # make doctor --online: never a token without asking
            raise NoCachedTokenError.for_key(self.credentials.app_key, self.server_id)
        log.info("Issuing a new KIS access token for app key …%s", self.credentials.app_key[-4:])

        def issue() -> Token:
            answer = self._send(
                "POST",
                protocol.TOKEN_PATH,
                what=what,
                json={
                    "grant_type": "client_credentials",
                    "appkey": self.credentials.app_key,
                    "appsecret": self.credentials.app_secret,
                },
            )
            try:
                body = self._parse(answer, what=what)
            except KisError as error:
                self._without_secrets(error)
                raise
            if "error_code" in body or "access_token" not in body:
                raise self._without_secrets(
                    KisApiError(
                        what=what,
                        rt_cd=str(body.get("rt_cd", "")),
                        msg_cd=str(body.get("error_code") or body.get("msg_cd", "")),
                        msg1=str(body.get("error_description") or body.get("msg1", "")),
                        http_status=answer.status,
                    )
                )
            try:
                expires_at = datetime.strptime(
                    body["access_token_token_expired"], "%Y-%m-%d %H:%M:%S"
                ).replace(tzinfo=SEOUL)
            except (KeyError, ValueError):
                expires_at = self.clock() + timedelta(seconds=int(body.get("expires_in", 0)))
            return Token(body["access_token"], expires_at)

        token = self._with_retries(issue, what=what)
        self.events["tokens_issued"] += 1
        return token

    # -- the balance TR -------------------------------------------------------------------
    def inquire_account_balance(
        self, account: Account, *, sim_as_of: date | None = None
    ) -> BalanceResponse:
        """Every page of 투자계좌자산현황조회 for one account, checked for rt_cd.

        `sim_as_of` asks the project's simulator for a past day; the real service has no such
        thing, and callers only pass it in simulator mode.
        """
        what = f"account {account.id}: {protocol.BALANCE_TR_ID} balance inquiry"
        pages: list[Page] = []
        tr_cont = ""
        with self._budget():  # every page, retry, token and wait of this account
            while True:
                page = self._balance_page(account, tr_cont, sim_as_of, what=what)
                pages.append(page)
                if page.tr_cont not in CONTINUED:
                    return BalanceResponse(account, self.clock(), tuple(pages))
                if len(pages) >= self.max_pages:
                    raise KisProtocolError(
                        f"{what}: the server still signals more data (tr_cont={page.tr_cont!r}) "
                        f"after {self.max_pages} pages; stopping rather than looping forever"
                    )
                tr_cont = "N"

    def _balance_page(
        self, account: Account, tr_cont: str, sim_as_of: date | None, *, what: str
    ) -> Page:
        """One page, with transient faults retried and the token re-issued once on EGW00123
        or EGW00121.

        Token issuance retries on its own; its failures are not retried again here.
        """
        for renewed in (False, True):
            headers = self._balance_headers(tr_cont, what=what)
            if sim_as_of is not None:
                headers[protocol.SIM_AS_OF_HEADER] = sim_as_of.isoformat()
            try:
                return self._with_retries(
                    functools.partial(self._request_page, account, headers, what=what), what=what
                )
            except KisApiError as error:
                if error.msg_cd not in TOKEN_REFUSED or renewed:
                    raise
                log.warning(
                    "%s: token refused (%s: expired, revoked or invalid); issuing a new one",
                    what,
                    error.msg_cd,
                )
                self.events["token_renewals"] += 1
                self._token = None
                self.token_cache.discard(self.server_id, self.credentials.app_key)
        raise AssertionError("unreachable")

    def _request_page(self, account: Account, headers: dict[str, str], *, what: str) -> Page:
        self.rate_limiter.acquire()
        answer = self._send(
            "GET",
            protocol.BALANCE_PATH,
            what=what,
            headers=headers,
            params=protocol.balance_params(account),
        )
        try:
            body = self._parse(answer, what=what)
            protocol.check_rt_cd(body, what=what, http_status=answer.status)
        except KisError as error:
            error.answer = answer  # kept in quarantine if it is what fails the account
            self._without_secrets(error)
            raise
        return Page(
            status=answer.status,
            tr_id=answer.headers.get("tr_id", ""),
            tr_cont=answer.headers.get("tr_cont", ""),
            body=answer.body.decode("utf-8"),
        )

    def _balance_headers(self, tr_cont: str, *, what: str) -> dict[str, str]:
        try:
            token = self.access_token()
        except KisError as error:  # said of the account that waited for the token; from None:
            raise protocol.said_of(error, what) from None  # the token endpoint's answer is not kept
        headers = {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {token}",
            "appkey": self.credentials.app_key,
            "appsecret": self.credentials.app_secret,
            "tr_id": protocol.BALANCE_TR_ID,
            "tr_cont": tr_cont,
            "custtype": self.custtype,
        }
        if self.corporate:
            headers.update(self.corporate.headers())
        return headers

    # -- transport ------------------------------------------------------------------------
    def _with_retries(self, call: Callable[[], Any], *, what: str) -> Any:
        for attempt in range(self.backoff.attempts):
            try:
                return call()
            except KisError as error:
                final = retry.give_up(error, attempt, self.backoff, answered=self.answered)
                if final is error:
                    raise
                if final is not None:
                    raise final from None
                delay = self.backoff.delay(attempt)
                left = self._time_left()
                if left is not None and left <= delay:
                    raise retry.said_again(
                        error,
                        f"{error}; gave up after {attempt + 1} attempt(s): {self._budget_text} "
                        "ends before the next one",
                        KisBudgetError,
                    ) from None
                cause = error.msg_cd if isinstance(error, KisApiError) else type(error).__name__
                self.events[f"retries_{cause}"] += 1
                log.warning("transient fault, retry %d in %.2f s: %s", attempt + 1, delay, error)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, *, what: str, **kwargs: Any) -> Answer:
        """The one way a request leaves: `transport.send`, to `self.origin` only, within the
        request deadline or what is left of the account's budget, whichever ends first."""
        deadline = self.request_deadline
        deadline_text = f"{deadline:g} s deadline (KIS_REQUEST_DEADLINE)"
        left = self._time_left()
        if left is not None and left < deadline:
            if left <= 0:
                raise KisBudgetError(f"{what}: no time left of {self._budget_text}")
            deadline, deadline_text = left, f"{left:.1f} s left of {self._budget_text}"
        answer = transport.send(
            self.session,
            method,
            self.base_url + path,
            origin=self.origin,
            what=what,
            deadline=deadline,
            deadline_text=deadline_text,
            max_body_bytes=self.max_body_bytes,
            timeout=self.timeout,
            **kwargs,
        )
        self.answered = True
        return answer

    @staticmethod
    def _parse(answer: Answer, *, what: str) -> dict[str, Any]:
        """The JSON body; a 5xx or 429 that is not JSON (a gateway's page) is transient."""
        try:
            if answer.decoding_error:
                raise KisProtocolError(
                    f"{what}: HTTP {answer.status} with a body that {answer.decoding_error}"
                )
            try:
                text = answer.body.decode("utf-8")
            except UnicodeDecodeError as error:
                raise KisProtocolError(
                    f"{what}: HTTP {answer.status} with a body that is not UTF-8 text (byte "
                    f"{error.start:,} of {len(answer.body):,})"
                ) from None
            return protocol.parse_body(text, what=what, http_status=answer.status)
        except KisProtocolError as error:
            if answer.status >= 500 or answer.status == 429:
                raise KisGatewayError(str(error)) from None
            raise
