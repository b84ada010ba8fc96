"""On the wire: secrets go to the configured origin only (never redirected), every request
ends within its deadline and every account within its budget, and every body has a size
limit. Against loopback servers written here (tests/wire_servers.py), not the simulator."""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import (
    KisBudgetError,
    KisDeadlineError,
    KisError,
    KisRedirectError,
    KisTooLargeError,
)
from pipelines.ingest.fetch import fetch_and_land, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis import protocol, transport
from pipelines.kis.client import Credentials, KisClient
from pipelines.kis.protocol import Account
from pipelines.kis.ratelimit import RateLimiter
from pipelines.kis.retry import Backoff
from pipelines.kis.tokens import SEOUL, Token, TokenCache
from pipelines.kis.transport import Origin
from pipelines.settings import Settings
from pipelines.simulator.portfolio import balance_body
from tests.wire_servers import (
    TOKEN,
    Connection,
    Recorder,
    Request,
    ScriptedServer,
    account_of,
    balance_answer,
    head,
    json_bytes,
    kis_like,
)

APP_KEY = "PSwireTestAppKey0000000000000000000"
APP_SECRET = "wire-test-APP-SECRET-" + "Zx9" * 12
ACCOUNT = Account("12345678", "01")
DAY = date(2026, 3, 16)
ONE_TRY = Backoff(attempts=1)
REDIRECTS = [301, 302, 303, 307, 308]


def client_for(server: ScriptedServer, cache: TokenCache, **kwargs: Any) -> KisClient:
    """Per-read timeouts longer than any deadline here: what ends a wait is the deadline."""
    kwargs.setdefault("timeout", (5.0, 10.0))
    kwargs.setdefault("backoff", ONE_TRY)
    kwargs.setdefault("rate_limiter", RateLimiter(1000))
    return KisClient(server.base_url, Credentials(APP_KEY, APP_SECRET), token_cache=cache, **kwargs)


def with_cached_token(client: KisClient) -> KisClient:
    from datetime import datetime, timedelta

    token = Token(TOKEN, datetime.now(SEOUL) + timedelta(hours=12))
    client.token_cache.save(client.server_id, client.credentials.app_key, token)
    return client


def good_body(account: Account = ACCOUNT) -> bytes:
    return json_bytes(balance_body(account, DAY))


def assert_one_line(message: str) -> None:
    assert "\n" not in message and len(message) < 600, message


# -- (4) secrets go to one origin only ------------------------------------------------------
def redirecting(status: int, to: str) -> Any:
    """Every request (token or balance) answered with a redirect to `to`, with a small page."""

    def script(request: Request, connection: Connection) -> bool:
        page = b"<html><body>moved</body></html>"
        return connection.answer(status, page, {"location": to, "content-type": "text/html"})

    return script


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirected_token_request_sends_the_secret_nowhere_else(
    token_cache: TokenCache, status: int
) -> None:
    with Recorder() as elsewhere:
        target = f"{elsewhere.base_url}/oauth2/tokenP?appsecret=leak&x=1"
        with ScriptedServer(redirecting(status, target)) as server:
            client = client_for(server, token_cache, backoff=Backoff(attempts=3, base=0.01))
            with pytest.raises(KisRedirectError) as caught:
                client.inquire_account_balance(ACCOUNT)
            time.sleep(0.1)  # anything on its way to the other port has arrived by now
    message = str(caught.value)
    assert_one_line(message)
    assert f"HTTP {status} redirect to 127.0.0.1:{elsewhere.port} refused" in message
    assert ACCOUNT.id in message and "token issuance" in message
    assert "leak" not in message and "/oauth2" not in message.split("refused")[0][-40:]
    assert APP_SECRET not in message
    assert len(server.to(protocol.TOKEN_PATH)) == 1  # not retried, not followed
    assert elsewhere.connections == 0 and not elsewhere.received
    assert caught.value.answer is None  # a token endpoint's answer is never kept


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirected_balance_request_sends_the_keys_nowhere_else(
    token_cache: TokenCache, status: int
) -> None:
    with Recorder() as elsewhere:
        target = f"{elsewhere.base_url}/steal?token=leak"
        with ScriptedServer(kis_like(redirecting(status, target))) as server:
            client = client_for(server, token_cache, backoff=Backoff(attempts=3, base=0.01))
            with pytest.raises(KisRedirectError) as caught:
                client.inquire_account_balance(ACCOUNT)
            time.sleep(0.1)
    message = str(caught.value)
    assert_one_line(message)
    assert message.startswith(f"account {ACCOUNT.id}: ")
    assert f"HTTP {status} redirect to 127.0.0.1:{elsewhere.port} refused" in message
    assert "steal" not in message and "leak" not in message
    assert len(server.to(protocol.BALANCE_PATH)) == 1  # not retried, not followed
    sent = server.to(protocol.BALANCE_PATH)[0].headers
    assert sent["appsecret"] == APP_SECRET  # it went to the configured server, and only there
    assert elsewhere.connections == 0 and not elsewhere.received
    answer = caught.value.answer  # kept for quarantine, with the Location reduced to its host
    assert answer is not None and answer.status == status
    assert answer.kept_headers()["location"] == f"127.0.0.1:{elsewhere.port}"


def test_a_redirects_body_is_read_only_up_to_the_limit(token_cache: TokenCache) -> None:
    """requests itself would read a redirect's whole body (to prepare the next request);
    here it is read like any other, to the limit."""
    huge = b"<p>moved</p>" + b" " * (3 << 20)

    def balance(request: Request, connection: Connection) -> bool:
        return connection.answer(302, huge, {"location": "/elsewhere"})

    with ScriptedServer(kis_like(balance)) as server:
        client = with_cached_token(client_for(server, token_cache, max_body_bytes=4096))
        with pytest.raises(KisRedirectError) as caught:
            client.inquire_account_balance(ACCOUNT)
    answer = caught.value.answer
    assert answer is not None and answer.body == huge[:4096] and not answer.complete


def test_secrets_a_server_sends_back_never_reach_an_error_message(
    token_cache: TokenCache,
) -> None:
    def echo(request: Request, connection: Connection) -> bool:
        sent = request.body.decode() + json.dumps(request.headers)
        return connection.answer(403, f"<p>you sent: {sent}</p>".encode())

    # the token request: its body holds the secret
    with ScriptedServer(echo) as server, pytest.raises(KisError) as caught:
        client_for(server, token_cache).inquire_account_balance(ACCOUNT)
    assert "HTTP 403" in str(caught.value) and "you sent" in str(caught.value)
    assert APP_SECRET not in str(caught.value) and "(secret removed)" in str(caught.value)

    with ScriptedServer(kis_like(echo)) as server:  # the balance request: in its headers
        client = with_cached_token(client_for(server, token_cache))
        with pytest.raises(KisError) as caught:
            client.inquire_account_balance(ACCOUNT)
    assert "you sent" in str(caught.value)
    for secret in (APP_SECRET, APP_KEY, TOKEN):
        assert secret not in str(caught.value)


def test_a_relative_redirect_is_refused_too(token_cache: TokenCache) -> None:
    with ScriptedServer(kis_like(redirecting(302, "/elsewhere?q=1"))) as server:
        client = with_cached_token(client_for(server, token_cache))
        with pytest.raises(KisRedirectError, match=r"HTTP 302 redirect to 127\.0\.0\.1:\d+ "):
            client.inquire_account_balance(ACCOUNT)
    assert [r.path for r in server.requests] == [protocol.BALANCE_PATH]


def test_a_request_to_another_origin_is_refused_before_anything_is_sent(
    token_cache: TokenCache,
) -> None:
    """The one place requests leave checks scheme, host and port: a path that would make the
    URL another host's (userinfo) never reaches it."""
    with Recorder() as elsewhere, ScriptedServer(kis_like(redirecting(302, "/"))) as server:
        client = with_cached_token(client_for(server, token_cache))
        sneaky = f"@127.0.0.1:{elsewhere.port}/x"
        with pytest.raises(KisError, match=r"refusing to send a request to http://127\.0\.0\.1:"):
            client._send("POST", sneaky, what="test", json={"appsecret": APP_SECRET})
        time.sleep(0.1)
    assert elsewhere.connections == 0 and not server.requests


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://openapi.koreainvestment.com:9443", "https://openapi.koreainvestment.com:9443"),
        ("https://OpenAPI.koreainvestment.com.", "https://openapi.koreainvestment.com:443"),
        ("http://127.0.0.1", "http://127.0.0.1:80"),
        ("http://[::1]:8765/x?y", "http://[::1]:8765"),
    ],
)
def test_an_origin_is_scheme_host_and_port(url: str, origin: str) -> None:
    assert str(Origin.of(url)) == origin


def test_another_port_or_scheme_is_another_origin() -> None:
    base = Origin.of("https://openapi.koreainvestment.com:9443")
    assert Origin.of("https://openapi.koreainvestment.com:9444/x") != base
    assert Origin.of("http://openapi.koreainvestment.com:9443/x") != base
    assert Origin.of("https://openapi.koreainvestment.com:9443/oauth2/tokenP") == base


# -- (5) every wait has an end ----------------------------------------------------------------
def trickling_body(every: float = 0.2) -> Any:
    def balance(request: Request, connection: Connection) -> bool:
        body = good_body()
        headers = {"content-type": "application/json", "tr_id": "CTRP6548R", "tr_cont": "D"}
        connection.send(head(200, body, headers))
        connection.trickle(body, every)
        return False

    return balance


def trickling_headers(request: Request, connection: Connection) -> bool:
    connection.trickle(head(200, good_body(), {"content-type": "application/json"}), 0.2)
    return False


def test_a_trickled_body_ends_at_the_deadline(token_cache: TokenCache) -> None:
    with ScriptedServer(kis_like(trickling_body())) as server:
        client = with_cached_token(client_for(server, token_cache, request_deadline=1.0))
        started = time.monotonic()
        with pytest.raises(KisDeadlineError) as caught:
            client.inquire_account_balance(ACCOUNT)
        took = time.monotonic() - started
    message = str(caught.value)
    assert_one_line(message)
    # the per-read timeout (10 s) never trips while bytes keep coming: ~1,000 s for the body
    assert 0.9 < took < 4.0, took
    assert message.startswith(f"account {ACCOUNT.id}: ")
    assert "no complete answer within the 1 s deadline (KIS_REQUEST_DEADLINE)" in message
    received = caught.value.answer
    assert received is not None and not received.complete and 2 <= len(received.body) <= 6
    assert f"received HTTP 200 and {len(received.body)} bytes of the body" in message


def test_trickled_headers_end_at_the_deadline(token_cache: TokenCache) -> None:
    with ScriptedServer(kis_like(trickling_headers)) as server:
        client = with_cached_token(client_for(server, token_cache, request_deadline=0.6))
        started = time.monotonic()
        with pytest.raises(KisDeadlineError, match="received no complete headers") as caught:
            client.inquire_account_balance(ACCOUNT)
        assert time.monotonic() - started < 3.5  # the headers alone would take 20 s
    assert caught.value.answer is None


def test_a_silent_server_ends_at_the_deadline_not_the_read_timeout(
    token_cache: TokenCache,
) -> None:
    def silent(request: Request, connection: Connection) -> bool:
        connection.stop.wait(10)
        return False

    with ScriptedServer(kis_like(silent)) as server:
        client = with_cached_token(client_for(server, token_cache, request_deadline=0.5))
        started = time.monotonic()
        with pytest.raises(KisDeadlineError):
            client.inquire_account_balance(ACCOUNT)
        assert time.monotonic() - started < 3.5  # the read timeout is 10 s


def test_an_accounts_budget_bounds_all_its_retries(token_cache: TokenCache) -> None:
    backoff = Backoff(attempts=10, base=0.05, cap=0.1)  # 10 attempts would take 5 s
    with ScriptedServer(kis_like(trickling_body())) as server:
        client = with_cached_token(
            client_for(
                server,
                token_cache,
                backoff=backoff,
                sleep=time.sleep,
                request_deadline=0.5,
                account_budget=1.6,
            )
        )
        started = time.monotonic()
        with pytest.raises(KisBudgetError) as caught:
            client.inquire_account_balance(ACCOUNT)
        took = time.monotonic() - started
    assert took < 1.6 + 1.0, took  # 10 attempts of 0.5 s would take 5 s and more
    message = str(caught.value)
    assert_one_line(message)
    assert message.startswith(f"account {ACCOUNT.id}: ")
    assert "the account's 1.6 s budget (KIS_ACCOUNT_BUDGET)" in message
    assert 2 <= len(server.to(protocol.BALANCE_PATH)) <= 4
    assert caught.value.answer is not None  # the last partial answer, for quarantine


def test_the_last_attempt_gets_only_what_is_left_of_the_budget(token_cache: TokenCache) -> None:
    with ScriptedServer(kis_like(trickling_body())) as server:
        client = with_cached_token(
            client_for(server, token_cache, request_deadline=5.0, account_budget=0.8)
        )
        started = time.monotonic()
        with pytest.raises(KisDeadlineError, match=r"s left of the account's 0\.8 s budget"):
            client.inquire_account_balance(ACCOUNT)
        assert time.monotonic() - started < 3.0  # not the 5 s deadline


def test_a_finished_requests_deadline_never_cuts_a_later_request_on_its_connection(
    token_cache: TokenCache,
) -> None:
    """Request 1 ends at once; request 2 reuses its connection and is slow. Request 1's
    deadline passes during request 2: it must not shut down the shared socket."""
    calls = {"n": 0}

    def balance(request: Request, connection: Connection) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            time.sleep(0.7)
        return balance_answer(connection, good_body())

    with ScriptedServer(kis_like(balance)) as server:
        client = with_cached_token(client_for(server, token_cache, request_deadline=1.0))
        client.inquire_account_balance(ACCOUNT)
        time.sleep(0.4)
        client.inquire_account_balance(ACCOUNT)  # ends at ~1.1 s: request 1's deadline was 1.0
    first, second = server.to(protocol.BALANCE_PATH)
    assert first.client_port == second.client_port  # one kept-alive connection


def test_after_a_deadline_the_connection_is_dropped_and_the_next_request_works(
    token_cache: TokenCache,
) -> None:
    calls = {"n": 0}

    def balance(request: Request, connection: Connection) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            return trickling_body()(request, connection)
        return balance_answer(connection, good_body())

    with ScriptedServer(kis_like(balance)) as server:
        client = with_cached_token(client_for(server, token_cache, request_deadline=0.5))
        with pytest.raises(KisDeadlineError):
            client.inquire_account_balance(ACCOUNT)
        response = client.inquire_account_balance(ACCOUNT)
    assert json.loads(response.pages[0].body) == balance_body(ACCOUNT, DAY)
    first, second = server.to(protocol.BALANCE_PATH)
    assert first.client_port != second.client_port


def test_deadlines_use_one_watchdog_thread_not_a_thread_per_request(
    token_cache: TokenCache,
) -> None:
    def balance(request: Request, connection: Connection) -> bool:
        return balance_answer(connection, good_body())

    with ScriptedServer(kis_like(balance)) as server:
        client = with_cached_token(client_for(server, token_cache))
        client.inquire_account_balance(ACCOUNT)
        before = threading.active_count()
        for _ in range(30):
            client.inquire_account_balance(ACCOUNT)
        assert threading.active_count() <= before + 1


def settings_for(server: ScriptedServer, tmp_path: Path, accounts: str, **extra: str) -> Settings:
    environ = {
        "KIS_ENV": "real",
        "KIS_BASE_URL": server.base_url,
        "KIS_APP_KEY": APP_KEY + "-run",
        "KIS_APP_SECRET": APP_SECRET,
        "KIS_ACCOUNTS": accounts,
        "KIS_DATA_ROOT": str(tmp_path / "data"),
        "KIS_RATE_LIMIT": "1000",
        **extra,
    }
    return Settings.from_env(environ, env_file=tmp_path / "none.env")


def test_the_accounts_behind_a_stalled_one_on_the_same_key_are_fetched(tmp_path: Path) -> None:
    stalled, behind = (
        Account("11111111", "01"),
        [Account("22222222", "01"), Account("33333333", "21")],
    )

    def balance(request: Request, connection: Connection) -> bool:
        if account_of(request) == stalled.id:
            return trickling_body()(request, connection)
        account = Account.parse(account_of(request))
        return balance_answer(connection, json_bytes(balance_body(account, DAY)))

    with ScriptedServer(kis_like(balance)) as server:
        accounts = ",".join(a.id for a in [stalled, *behind])
        settings = settings_for(
            server, tmp_path, accounts, KIS_REQUEST_DEADLINE="0.5", KIS_ACCOUNT_BUDGET="1.5"
        )
        landing = RawLanding(settings.data_root)
        started = time.monotonic()
        report = fetch_and_land(
            settings, landing, today_in_seoul(), token_cache=TokenCache(tmp_path / "tokens")
        )
        took = time.monotonic() - started
    assert took < 1.5 + 2.0, took  # about the stalled account's budget, then the others
    assert list(report.failures) == [stalled.id]
    assert "1.5 s budget" in str(report.failures[stalled.id])
    assert [p.parent.name for p in report.landed] == [a.id for a in behind]
    assert stalled.id in report.quarantined  # what arrived of it is kept


# -- (5) every answer a size ----------------------------------------------------------------
def test_an_oversized_body_is_cut_at_the_limit_and_not_retried(token_cache: TokenCache) -> None:
    big = b'{"rt_cd":"0","output1":[' + b'{"pchs_amt":"1"},' * 200_000  # 3.4 MB, never ends

    def balance(request: Request, connection: Connection) -> bool:
        return balance_answer(connection, big)

    with ScriptedServer(kis_like(balance)) as server:
        client = with_cached_token(client_for(server, token_cache, backoff=Backoff(attempts=3)))
        with pytest.raises(KisTooLargeError) as caught:
            client.inquire_account_balance(ACCOUNT)
    message = str(caught.value)
    assert_one_line(message)
    assert message.startswith(f"account {ACCOUNT.id}: ")
    assert "HTTP 200 with a body over the 1,048,576-byte limit (KIS_MAX_BODY_BYTES)" in message
    assert len(server.to(protocol.BALANCE_PATH)) == 1
    kept = caught.value.answer
    assert kept is not None and not kept.complete
    assert kept.body == big[: transport.DEFAULT_MAX_BODY_BYTES]


def test_a_gzip_bomb_is_cut_at_the_limit(token_cache: TokenCache) -> None:
    bomb = gzip.compress(b" " * (64 << 20), compresslevel=9)  # 64 MiB in about 64 KB

    def balance(request: Request, connection: Connection) -> bool:
        return balance_answer(connection, bomb, **{"content-encoding": "gzip"})

    with ScriptedServer(kis_like(balance)) as server:
        client = with_cached_token(client_for(server, token_cache, max_body_bytes=100_000))
        started = time.monotonic()
        with pytest.raises(KisTooLargeError, match="100,000-byte limit"):
            client.inquire_account_balance(ACCOUNT)
        assert time.monotonic() - started < 5
    assert len(bomb) < 100_000  # what was over the limit is the decoded body


def test_gzip_and_deflate_answers_are_read(token_cache: TokenCache) -> None:
    import zlib

    encodings = {"gzip": gzip.compress(good_body()), "deflate": zlib.compress(good_body())}
    order = iter(encodings.items())

    def balance(request: Request, connection: Connection) -> bool:
        name, body = next(order)
        return balance_answer(connection, body, **{"content-encoding": name})

    with ScriptedServer(kis_like(balance)) as server:
        client = with_cached_token(client_for(server, token_cache))
        for _ in encodings:
            response = client.inquire_account_balance(ACCOUNT)
            assert json.loads(response.pages[0].body) == balance_body(ACCOUNT, DAY)
    assert server.to(protocol.BALANCE_PATH)[0].headers["accept-encoding"] == "gzip, deflate"
