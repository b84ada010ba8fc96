"""KisClient: token issuance and the CTRP6548R balance request over `requests`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests

from pipelines.kis import protocol
from pipelines.kis.protocol import Account, KisApiError, KisError, KisProtocolError
from pipelines.kis.tokens import SEOUL, Token, TokenCache

log = logging.getLogger(__name__)

TOKEN_EXPIRED = "EGW00123"
CONTINUED = frozenset({"F", "M"})


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
        server_id: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_pages: int = 20,
        clock: Callable[[], datetime] = utc_now,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.token_cache = token_cache
        self.custtype = custtype
        #: What the token cache files the token under; the base URL unless the server moves.
        self.server_id = server_id or self.base_url
        self.timeout = timeout
        self.max_pages = max_pages
        self.clock = clock
        self.session = session or requests.Session()

    # -- tokens ---------------------------------------------------------------------------
    def access_token(self) -> str:
        """A cached token if one is still good, else one freshly issued (and cached)."""
        key = (self.server_id, self.credentials.app_key)
        cached = self.token_cache.load(*key, now=self.clock())
        if cached:
            return cached.access_token
        with self.token_cache.locked(*key):
            cached = self.token_cache.load(*key, now=self.clock())  # another run may have won
            if cached:
                return cached.access_token
            token = self._issue_token()
            self.token_cache.save(*key, token)
            return token.access_token

    def _issue_token(self) -> Token:
        what = "token issuance (/oauth2/tokenP)"
        log.info("Issuing a new KIS access token for app key …%s", self.credentials.app_key[-4:])
        response = self._send(
            "POST",
            protocol.TOKEN_PATH,
            what=what,
            json={
                "grant_type": "client_credentials",
                "appkey": self.credentials.app_key,
                "appsecret": self.credentials.app_secret,
            },
        )
        body = protocol.parse_body(response.text, what=what, http_status=response.status_code)
        if "error_code" in body or "access_token" not in body:
            raise KisApiError(
                what=what,
                rt_cd=str(body.get("rt_cd", "")),
                msg_cd=str(body.get("error_code") or body.get("msg_cd", "")),
                msg1=str(body.get("error_description") or body.get("msg1", "")),
                http_status=response.status_code,
            )
        try:
            expires_at = datetime.strptime(
                body["access_token_token_expired"], "%Y-%m-%d %H:%M:%S"
            ).replace(tzinfo=SEOUL)
        except (KeyError, ValueError):
            expires_at = self.clock() + timedelta(seconds=int(body.get("expires_in", 0)))
        return Token(body["access_token"], expires_at)

    # -- the balance TR -------------------------------------------------------------------
    def inquire_account_balance(
        self, account: Account, *, sim_as_of: date | None = None
    ) -> BalanceResponse:
        """Every page of 투자계좌자산현황조회 for one account, checked for rt_cd.

        `sim_as_of` asks the project's simulator for a past day; the real service has no such
        thing, and callers only pass it in simulator mode.
        """
        what = f"account {account.id}: {protocol.BALANCE_TR_ID} balance inquiry"
        try:
            return self._balance_pages(account, what=what, sim_as_of=sim_as_of)
        except KisApiError as error:
            if error.msg_cd != TOKEN_EXPIRED:
                raise
            log.warning("%s: token expired or revoked (EGW00123); issuing a new one", what)
            self.token_cache.discard(self.server_id, self.credentials.app_key)
            return self._balance_pages(account, what=what, sim_as_of=sim_as_of)

    def _balance_pages(
        self, account: Account, *, what: str, sim_as_of: date | None
    ) -> BalanceResponse:
        pages: list[Page] = []
        tr_cont = ""
        while True:
            headers = self._balance_headers(tr_cont)
            if sim_as_of is not None:
                headers[protocol.SIM_AS_OF_HEADER] = sim_as_of.isoformat()
            response = self._send(
                "GET",
                protocol.BALANCE_PATH,
                what=what,
                headers=headers,
                params=protocol.balance_params(account),
            )
            body = protocol.parse_body(response.text, what=what, http_status=response.status_code)
            protocol.check_rt_cd(body, what=what, http_status=response.status_code)
            page = Page(
                status=response.status_code,
                tr_id=response.headers.get("tr_id", ""),
                tr_cont=response.headers.get("tr_cont", ""),
                body=response.text,
            )
            pages.append(page)
            if page.tr_cont not in CONTINUED:
                return BalanceResponse(account, self.clock(), tuple(pages))
            if len(pages) >= self.max_pages:
                raise KisProtocolError(
                    f"{what}: the server still signals more data (tr_cont={page.tr_cont!r}) "
                    f"after {self.max_pages} pages; stopping rather than looping forever"
                )
            tr_cont = "N"

    def _balance_headers(self, tr_cont: str) -> dict[str, str]:
        return {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {self.access_token()}",
            "appkey": self.credentials.app_key,
            "appsecret": self.credentials.app_secret,
            "tr_id": protocol.BALANCE_TR_ID,
            "tr_cont": tr_cont,
            "custtype": self.custtype,
        }

    def _send(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            # The exception text names the URL only; headers (and so secrets) never appear.
            raise KisError(f"{what}: could not reach {self.base_url}: {error}") from None
        response.encoding = "utf-8"
        return response
