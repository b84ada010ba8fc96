"""KisClient against the simulator, and against tiny scripted servers, over real loopback HTTP."""

from __future__ import annotations

import json
import logging
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pipelines.errors import KisError, KisProtocolError
from pipelines.kis import protocol
from pipelines.kis.client import Credentials, KisClient
from pipelines.kis.protocol import Account, KisApiError
from pipelines.kis.ratelimit import RateLimiter
from pipelines.kis.retry import Backoff
from pipelines.kis.tokens import SEOUL, Token, TokenCache
from pipelines.simulator.portfolio import balance_body
from pipelines.simulator.server import Simulator

APP_KEY = "PSclientTestAppKey00000000000000000"
APP_SECRET = "client-test-APP-SECRET-" + "s3cr3t" * 10
CREDENTIALS = Credentials(APP_KEY, APP_SECRET)
STANDARD = Account("12345678", "01")
PRODUCT21 = Account("12345678", "21")
FAST = (2.0, 5.0)  # (connect, read) for every test client
QUICK_RETRIES = Backoff(attempts=3, base=0.01, cap=0.02)


class Sleeps(list[float]):
    """A `sleep` that records what the client would have waited, and does not wait."""

    def __call__(self, seconds: float) -> None:
        assert 0 <= seconds <= 120, seconds
        self.append(seconds)


def make_client(
    base_url: str, cache: TokenCache, credentials: Credentials = CREDENTIALS, **kwargs: Any
) -> KisClient:
    """A client with short timeouts, quick retries and no process-wide pacing."""
    kwargs.setdefault("timeout", FAST)
    kwargs.setdefault("backoff", QUICK_RETRIES)
    kwargs.setdefault("rate_limiter", RateLimiter(1000))
    kwargs.setdefault("sleep", Sleeps())
    return KisClient(base_url, credentials, token_cache=cache, **kwargs)


def rows_of(page_body: str) -> list[dict[str, str]]:
    rows = json.loads(page_body)["output1"]
    assert isinstance(rows, list)
    return rows


def cache_token(client: KisClient, access_token: str, expires_at: datetime | None = None) -> Path:
    """Put a token into the client's cache under the key the client looks it up by."""
    expires_at = expires_at or datetime.now(SEOUL) + timedelta(hours=12)
    client.token_cache.save(
        client.server_id, client.credentials.app_key, Token(access_token, expires_at)
    )
    return client.token_cache.path_for(client.server_id, client.credentials.app_key)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a scripted loopback server ------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(status: int, body: dict[str, Any], **headers: str) -> Reply:
    return Reply(
        status,
        json.dumps(body, ensure_ascii=False).encode(),
        (("content-type", "application/json; charset=UTF-8"), *headers.items()),
    )


class ScriptedServer:
    """A loopback HTTP server that answers each request with `respond(seen)` and records it."""

    def __init__(self, respond: Callable[[Seen], Reply]):
        self.respond = respond
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                url = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    url.path,
                    parse_qs(url.query, keep_blank_values=True),
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length),
                )
                outer.seen.append(seen)
                reply = outer.respond(seen)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def requests_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


FAKE_TOKEN = "scripted-access-token-" + "t0k3n" * 8


def token_reply() -> Reply:
    expires = datetime.now(SEOUL) + timedelta(hours=24)
    return json_reply(
        200,
        {
            "access_token": FAKE_TOKEN,
            "access_token_token_expired": expires.strftime("%Y-%m-%d %H:%M:%S"),
            "token_type": "Bearer",
            "expires_in": 86400,
        },
    )


def kis_like(balance: Callable[[Seen, int], Reply]) -> Callable[[Seen], Reply]:
    """Token issuance as KIS does it; balance requests answered by `balance(seen, n)`."""
    count = {"balance": 0}

    def respond(seen: Seen) -> Reply:
        if seen.method == "POST" and seen.path == protocol.TOKEN_PATH:
            return token_reply()
        if seen.method == "GET" and seen.path == protocol.BALANCE_PATH:
            count["balance"] += 1
            return balance(seen, count["balance"])
        return Reply(404, b"not found", (("content-type", "text/plain"),))

    return respond


def balance_page(tr_cont: str, account: Account = STANDARD) -> Reply:
    return json_reply(
        200, balance_body(account, date(2024, 3, 15)), tr_id="CTRP6548R", tr_cont=tr_cont
    )


# -- balance against the simulator -----------------------------------------------------------
@pytest.mark.parametrize(("account", "rows"), [(STANDARD, 20), (PRODUCT21, 17)])
def test_balance_pages_parse_to_the_layout_rows(
    simulator: Simulator, token_cache: TokenCache, account: Account, rows: int
) -> None:
    before = datetime.now(UTC)
    response = make_client(simulator.base_url, token_cache).inquire_account_balance(account)
    after = datetime.now(UTC)

    assert response.account == account
    assert len(response.pages) == 1
    page = response.pages[0]
    assert page.status == 200
    assert page.tr_id == "CTRP6548R"
    assert page.tr_cont == "D"
    assert len(rows_of(page.body)) == rows
    body = json.loads(page.body)
    assert body["rt_cd"] == "0"
    assert set(body["output2"]) == set(protocol.OUTPUT2_FIELDS)
    assert response.fetched_at.tzinfo is not None
    assert response.fetched_at.utcoffset() == timedelta(0)
    assert before <= response.fetched_at <= after


def test_page_body_is_the_text_as_received(simulator: Simulator, token_cache: TokenCache) -> None:
    day = date(2024, 3, 15)
    response = make_client(simulator.base_url, token_cache).inquire_account_balance(
        STANDARD, sim_as_of=day
    )
    body = response.pages[0].body
    assert json.loads(body) == balance_body(STANDARD, day)
    assert "조회되었습니다" in body  # decoded as UTF-8, not mojibake
    assert json.loads(body)["msg1"].endswith(" ")  # nothing trimmed on the way in


def test_sim_as_of_selects_the_day(simulator: Simulator, token_cache: TokenCache) -> None:
    client = make_client(simulator.base_url, token_cache)
    one = client.inquire_account_balance(STANDARD, sim_as_of=date(2024, 3, 14))
    other = client.inquire_account_balance(STANDARD, sim_as_of=date(2024, 3, 15))
    assert json.loads(one.pages[0].body) == balance_body(STANDARD, date(2024, 3, 14))
    assert one.pages[0].body != other.pages[0].body


def test_future_sim_as_of_is_an_api_error(simulator: Simulator, token_cache: TokenCache) -> None:
    future = datetime.now(SEOUL).date() + timedelta(days=2)
    with pytest.raises(KisApiError) as caught:
        make_client(simulator.base_url, token_cache).inquire_account_balance(
            STANDARD, sim_as_of=future
        )
    assert caught.value.rt_cd != "0"
    assert STANDARD.id in str(caught.value)


def test_request_carries_the_spec_headers_and_query(token_cache: TokenCache) -> None:
    with ScriptedServer(kis_like(lambda seen, n: balance_page("D"))) as server:
        make_client(server.base_url, token_cache).inquire_account_balance(STANDARD)
    [token_request] = server.requests_to(protocol.TOKEN_PATH)
    [balance] = server.requests_to(protocol.BALANCE_PATH)
    assert json.loads(token_request.body) == {
        "grant_type": "client_credentials",
        "appkey": APP_KEY,
        "appsecret": APP_SECRET,
    }
    assert balance.headers["content-type"] == "application/json; charset=utf-8"
    assert balance.headers["authorization"] == f"Bearer {FAKE_TOKEN}"
    assert balance.headers["appkey"] == APP_KEY
    assert balance.headers["appsecret"] == APP_SECRET
    assert balance.headers["tr_id"] == "CTRP6548R"
    assert balance.headers["custtype"] == "P"
    assert balance.headers.get("tr_cont", "") == ""  # 공백: the first inquiry
    assert balance.query == {
        "CANO": ["12345678"],
        "ACNT_PRDT_CD": ["01"],
        "INQR_DVSN_1": [""],
        "BSPR_BF_DT_APLY_YN": [""],
    }
    assert protocol.SIM_AS_OF_HEADER not in balance.headers


# -- token caching ---------------------------------------------------------------------------
def test_token_is_issued_once_and_shared_through_the_cache_directory(
    simulator: Simulator, token_cache: TokenCache
) -> None:
    client = make_client(simulator.base_url, token_cache)
    client.inquire_account_balance(STANDARD)
    assert simulator.requests["token_issued"] == 1
    client.inquire_account_balance(PRODUCT21)
    client.inquire_account_balance(STANDARD)
    assert simulator.requests["token_issued"] == 1

    # another client, another TokenCache object, same directory: as another process would
    second = make_client(simulator.base_url, TokenCache(token_cache.directory))
    second.inquire_account_balance(STANDARD)
    assert second.access_token() == client.access_token()
    assert simulator.requests["token_issued"] == 1
    assert simulator.requests["balance"] == 4


def test_a_client_keeps_its_token_without_reading_the_cache_file_again(
    simulator: Simulator, token_cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(simulator.base_url, token_cache)
    client.inquire_account_balance(STANDARD)
    reads = []
    original = TokenCache.load
    monkeypatch.setattr(
        TokenCache, "load", lambda self, *a, **k: reads.append(a) or original(self, *a, **k)
    )
    for _ in range(3):
        client.inquire_account_balance(PRODUCT21)
    assert reads == [] and simulator.requests["token_issued"] == 1


def test_token_is_cached_per_server(simulator: Simulator, token_cache: TokenCache) -> None:
    make_client(simulator.base_url, token_cache).inquire_account_balance(STANDARD)
    with Simulator() as other:
        make_client(other.base_url, token_cache).inquire_account_balance(STANDARD)
        assert other.requests["token_issued"] == 1
    assert simulator.requests["token_issued"] == 1
    paths = {
        token_cache.path_for(simulator.base_url, APP_KEY),
        token_cache.path_for(other.base_url, APP_KEY),
    }
    assert len(paths) == 2 and all(path.is_file() for path in paths)


def test_token_file_is_owner_only_and_holds_no_credentials(
    simulator: Simulator, tmp_path: Path
) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)  # a pre-existing, too-open directory is tightened
    cache = TokenCache(directory)
    client = make_client(simulator.base_url, cache)
    client.inquire_account_balance(STANDARD)

    path = cache.path_for(client.server_id, APP_KEY)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    text = path.read_text()
    assert APP_SECRET not in text
    assert APP_KEY not in text
    assert APP_KEY not in path.name
    for leftover in directory.iterdir():  # no temporary file left behind, nothing world-readable
        assert not leftover.name.endswith(".tmp")
        assert stat.S_IMODE(leftover.stat().st_mode) & 0o077 == 0
    stored = json.loads(text)
    assert stored["access_token"] == client.access_token()
    expires_at = datetime.fromisoformat(stored["expires_at"])
    assert expires_at.tzinfo is not None
    assert timedelta(hours=23) < expires_at - datetime.now(UTC) <= timedelta(hours=24)


def test_token_expiring_within_the_margin_is_not_reused(
    simulator: Simulator, token_cache: TokenCache
) -> None:
    client = make_client(simulator.base_url, token_cache)
    assert token_cache.margin == timedelta(minutes=10)
    path = cache_token(client, "almost-expired-token", datetime.now(UTC) + timedelta(minutes=5))

    client.inquire_account_balance(STANDARD)

    assert simulator.requests["token_issued"] == 1
    assert simulator.requests["balance"] == 1  # the stale token was never sent
    assert json.loads(path.read_text())["access_token"] != "almost-expired-token"


def test_token_reuse_ends_margin_before_expiry(token_cache: TokenCache) -> None:
    with Simulator(token_interval=0) as sim:
        issued_at = datetime.now(UTC)
        make_client(sim.base_url, token_cache).inquire_account_balance(STANDARD)
        assert sim.requests["token_issued"] == 1

        def later(delta: timedelta) -> Callable[[], datetime]:
            return lambda: issued_at + delta

        # 24 h lifetime, 10 min margin: still good at +23h49m, replaced at +23h51m
        make_client(
            sim.base_url, token_cache, clock=later(timedelta(hours=23, minutes=49))
        ).inquire_account_balance(STANDARD)
        assert sim.requests["token_issued"] == 1
        make_client(
            sim.base_url, token_cache, clock=later(timedelta(hours=23, minutes=51))
        ).inquire_account_balance(STANDARD)
        assert sim.requests["token_issued"] == 2


def test_cache_entry_without_offset_is_ignored(
    simulator: Simulator, token_cache: TokenCache
) -> None:
    client = make_client(simulator.base_url, token_cache)
    path = cache_token(client, "placeholder")
    path.write_text(json.dumps({"access_token": "x", "expires_at": "2099-01-01T00:00:00"}))
    client.inquire_account_balance(STANDARD)
    assert simulator.requests["token_issued"] == 1


# -- EGW00123: a token the server no longer accepts ------------------------------------------
def test_token_expired_on_the_server_is_discarded_and_reissued_once(
    simulator: Simulator, token_cache: TokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    # A token issued 25 h ago (by a simulator whose clock says so: the signing key is shared,
    # so the fixture's simulator accepts its signature) but cached as if it were still good.
    with Simulator(clock=lambda: time.time() - 25 * 3600) as past:
        stale = requests.post(
            past.base_url + protocol.TOKEN_PATH,
            json={"grant_type": "client_credentials", "appkey": APP_KEY, "appsecret": APP_SECRET},
            timeout=FAST,
        ).json()["access_token"]
    client = make_client(simulator.base_url, token_cache)
    path = cache_token(client, stale, datetime.now(UTC) + timedelta(hours=12))
    caplog.set_level(logging.WARNING, logger="pipelines.kis.client")

    response = client.inquire_account_balance(STANDARD)

    assert len(rows_of(response.pages[0].body)) == 20
    assert simulator.requests["balance"] == 2  # refused once, then answered
    assert simulator.requests["token_issued"] == 1  # exactly one re-issuance
    fresh = json.loads(path.read_text())["access_token"]
    assert fresh != stale
    assert any("EGW00123" in record.getMessage() for record in caplog.records)
    # and the new token is reused from now on
    client.inquire_account_balance(STANDARD)
    assert simulator.requests["token_issued"] == 1


def test_token_expired_twice_gives_up_after_one_retry(token_cache: TokenCache) -> None:
    expired = {"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "기간이 만료된 token 입니다."}
    # EGW00123 is seen on HTTP 200 as well as 500
    with (
        ScriptedServer(kis_like(lambda seen, n: json_reply(200, expired))) as server,
        pytest.raises(KisApiError) as caught,
    ):
        make_client(server.base_url, token_cache).inquire_account_balance(STANDARD)
    assert caught.value.msg_cd == "EGW00123"
    assert caught.value.http_status == 200
    assert len(server.requests_to(protocol.BALANCE_PATH)) == 2
    assert len(server.requests_to(protocol.TOKEN_PATH)) == 2


# -- errors the service reports --------------------------------------------------------------
def test_business_error_names_the_account_and_never_leaks_secrets(
    simulator: Simulator, token_cache: TokenCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(simulator.base_url, token_cache)
    client.inquire_account_balance(STANDARD)  # a successful call, logged too
    bad = Account.parse("00000000-01")

    with pytest.raises(KisApiError) as caught:
        client.inquire_account_balance(bad)

    error = caught.value
    assert error.rt_cd == "1"
    assert error.msg_cd == "OPSQ2000"
    assert error.msg1 == "ERROR : INPUT INVALID_CHECK_ACNO"
    assert error.http_status == 200
    assert "00000000-01" in str(error)
    assert "OPSQ2000" in str(error)
    access_token = client.access_token()
    assert simulator.requests["token_issued"] == 1
    texts = [str(error), repr(error), caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    for text in texts:
        assert APP_SECRET not in text
        assert access_token not in text
    assert APP_SECRET not in repr(client.credentials)
    assert caplog.records  # the capture did see the client's and urllib3's logging


def test_msg1_is_stripped(token_cache: TokenCache) -> None:
    padded = {"rt_cd": "1", "msg_cd": "OPSQ2002", "msg1": "ERROR : 조회할 자료가 없습니다      "}
    with (
        ScriptedServer(kis_like(lambda seen, n: json_reply(500, padded))) as server,
        pytest.raises(KisApiError) as caught,
    ):
        make_client(server.base_url, token_cache).inquire_account_balance(PRODUCT21)
    assert caught.value.msg1 == "ERROR : 조회할 자료가 없습니다"
    assert caught.value.http_status == 500
    assert "12345678-21" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [{"msg_cd": "X", "msg1": "no rt_cd"}, {"rt_cd": 0, "output1": []}, {"rt_cd": "", "msg1": ""}],
    ids=["missing", "number", "blank"],
)
def test_anything_but_rt_cd_string_zero_is_an_error(
    token_cache: TokenCache, body: dict[str, Any]
) -> None:
    with (
        ScriptedServer(kis_like(lambda seen, n: json_reply(200, body))) as server,
        pytest.raises(KisApiError),
    ):
        make_client(server.base_url, token_cache).inquire_account_balance(STANDARD)


def test_token_throttle_surfaces_as_egw00133(simulator: Simulator, tmp_path: Path) -> None:
    first = make_client(simulator.base_url, TokenCache(tmp_path / "first"))
    sleeps = Sleeps()
    second = make_client(simulator.base_url, TokenCache(tmp_path / "second"), sleep=sleeps)
    first.inquire_account_balance(STANDARD)

    with pytest.raises(KisApiError) as caught:
        second.inquire_account_balance(STANDARD)

    assert caught.value.msg_cd == "EGW00133"
    assert caught.value.http_status == 403
    assert "EGW00133" in str(caught.value)
    assert APP_SECRET not in str(caught.value)
    assert simulator.requests["token_issued"] == 1
    assert simulator.requests["balance"] == 1  # the second client never got as far
    assert not TokenCache(tmp_path / "second").path_for(second.server_id, APP_KEY).exists()
    # Waiting the throttle out is allowed, but only a few times, each at least a minute long.
    assert len(sleeps) <= 5
    assert all(seconds >= 60 for seconds in sleeps)


# -- transport failures ----------------------------------------------------------------------
BAD_GATEWAY = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


def html_502(seen: Seen) -> Reply:
    return Reply(502, BAD_GATEWAY, (("content-type", "text/html"),))


def test_html_error_page_is_a_protocol_error_naming_the_account(
    token_cache: TokenCache,
) -> None:
    sleeps = Sleeps()
    with ScriptedServer(html_502) as server:
        client = make_client(server.base_url, token_cache, sleep=sleeps)
        cache_token(client, FAKE_TOKEN)  # a cached token: the balance request is what fails
        with pytest.raises(KisProtocolError) as caught:
            client.inquire_account_balance(PRODUCT21)
    message = str(caught.value)
    assert "12345678-21" in message
    assert "502" in message
    assert "Bad Gateway" in message
    assert "<title>" in message  # quoted, not paraphrased
    assert len(message) < 600  # a snippet, not the whole page
    # a gateway page may be retried, but only as often as the backoff allows
    assert 1 <= len(server.requests_to(protocol.BALANCE_PATH)) <= QUICK_RETRIES.attempts
    assert len(sleeps) < QUICK_RETRIES.attempts
    assert not server.requests_to(protocol.TOKEN_PATH)


def test_html_error_page_during_token_issuance_names_the_account(
    token_cache: TokenCache,
) -> None:
    with (
        ScriptedServer(html_502) as server,
        pytest.raises(KisProtocolError) as caught,
    ):
        make_client(server.base_url, token_cache).inquire_account_balance(PRODUCT21)
    assert "Bad Gateway" in str(caught.value)
    assert "12345678-21" in str(caught.value)


def test_token_endpoint_failures_are_retried_a_bounded_number_of_times(
    token_cache: TokenCache,
) -> None:
    sleeps = Sleeps()
    with (
        ScriptedServer(html_502) as server,
        pytest.raises(KisProtocolError) as caught,
    ):
        make_client(server.base_url, token_cache, sleep=sleeps).inquire_account_balance(STANDARD)
    assert len(server.requests_to(protocol.TOKEN_PATH)) <= QUICK_RETRIES.attempts
    assert len(sleeps) < QUICK_RETRIES.attempts
    assert str(caught.value).count("still failing") <= 1


def test_closed_port_is_a_kis_error_naming_the_url(token_cache: TokenCache) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    client = make_client(base_url, token_cache)
    started = time.monotonic()
    with pytest.raises(KisError) as caught:
        client.inquire_account_balance(STANDARD)
    assert time.monotonic() - started < 10
    assert not isinstance(caught.value, KisApiError | KisProtocolError)
    assert f"could not reach {base_url}" in str(caught.value)
    assert APP_SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_closed_port_with_a_cached_token_names_the_account(token_cache: TokenCache) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    client = make_client(base_url, token_cache)
    cache_token(client, FAKE_TOKEN)
    with pytest.raises(KisError) as caught:
        client.inquire_account_balance(STANDARD)
    assert "could not reach" in str(caught.value)
    assert STANDARD.id in str(caught.value)
    assert FAKE_TOKEN not in str(caught.value)


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.timeouts.append(kwargs.get("timeout"))
        return super().request(method, url, *args, **kwargs)


def test_default_timeout_is_connect_read_pair(token_cache: TokenCache) -> None:
    client = KisClient("http://127.0.0.1:9", CREDENTIALS, token_cache=token_cache)
    assert isinstance(client.timeout, tuple) and len(client.timeout) == 2
    connect, read = client.timeout
    assert 0 < connect <= read


def test_every_request_is_sent_with_the_client_timeout(
    simulator: Simulator, token_cache: TokenCache
) -> None:
    session = RecordingSession()
    client = make_client(simulator.base_url, token_cache, timeout=(1.5, 7.0), session=session)
    client.inquire_account_balance(STANDARD)
    client.inquire_account_balance(PRODUCT21)
    assert session.timeouts == [(1.5, 7.0)] * 3  # one token, two balances


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts TCP connections (the kernel's backlog does) and never answers.

    The listener is closed after 8 s whatever happens, which resets the waiting connections:
    a client that sent no timeout fails the test instead of hanging it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    guard = threading.Timer(8.0, sock.close)
    guard.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        guard.cancel()
        sock.close()


def test_a_server_that_never_answers_times_out(silent_server: str, token_cache: TokenCache) -> None:
    client = make_client(silent_server, token_cache, timeout=(1, 0.5))
    cache_token(client, FAKE_TOKEN)  # the balance request is the one left hanging
    started = time.monotonic()
    with pytest.raises(KisError) as caught:
        client.inquire_account_balance(STANDARD)
    assert time.monotonic() - started < 5
    assert silent_server in str(caught.value)
    assert "timed out" in str(caught.value).lower()


# -- continuation (tr_cont) ------------------------------------------------------------------
@pytest.mark.parametrize("more", ["M", "F"])
def test_continuation_fetches_the_next_page_with_tr_cont_n(
    token_cache: TokenCache, more: str
) -> None:
    def balance(seen: Seen, n: int) -> Reply:
        return balance_page(more if n == 1 else "D")

    with ScriptedServer(kis_like(balance)) as server:
        response = make_client(server.base_url, token_cache).inquire_account_balance(STANDARD)
    first, second = server.requests_to(protocol.BALANCE_PATH)
    assert first.headers.get("tr_cont", "") == ""
    assert second.headers["tr_cont"] == "N"
    assert second.query == first.query
    assert second.headers["authorization"] == f"Bearer {FAKE_TOKEN}"
    assert [page.tr_cont for page in response.pages] == [more, "D"]
    assert all(len(rows_of(page.body)) == 20 for page in response.pages)
    assert len(server.requests_to(protocol.TOKEN_PATH)) == 1


@pytest.mark.parametrize("last", ["D", "E", None])
def test_last_page_markers_end_the_inquiry(token_cache: TokenCache, last: str | None) -> None:
    def balance(seen: Seen, n: int) -> Reply:
        if last is None:  # no tr_cont header at all
            return json_reply(200, balance_body(STANDARD, date(2024, 3, 15)), tr_id="CTRP6548R")
        return balance_page(last)

    with ScriptedServer(kis_like(balance)) as server:
        response = make_client(server.base_url, token_cache).inquire_account_balance(STANDARD)
    assert len(response.pages) == 1
    assert len(server.requests_to(protocol.BALANCE_PATH)) == 1


def test_endless_continuation_stops_at_max_pages(token_cache: TokenCache) -> None:
    with ScriptedServer(kis_like(lambda seen, n: balance_page("M"))) as server:
        client = make_client(server.base_url, token_cache, max_pages=3)
        with pytest.raises(KisProtocolError) as caught:
            client.inquire_account_balance(STANDARD)
    assert len(server.requests_to(protocol.BALANCE_PATH)) == 3
    assert STANDARD.id in str(caught.value)
    assert "3 pages" in str(caught.value)
    assert [
        seen.headers.get("tr_cont", "") for seen in server.requests_to(protocol.BALANCE_PATH)
    ] == ["", "N", "N"]
