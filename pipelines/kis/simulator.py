"""A local KIS Open API server on loopback that speaks TR CTRP6548R and token issuance.

It is the sandbox (nobody can call this TR without a real account), the default data source
when no credentials are set, and what the tests run against. Start it alone with
`kis-simulator`. Beyond the real protocol it understands one header, `x-kis-sim-as-of`, to
answer as of a past day.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipelines.kis import protocol
from pipelines.kis.protocol import Account
from pipelines.kis.simulated_portfolio import balance_body
from pipelines.kis.tokens import SEOUL

TOKEN_LIFETIME = timedelta(hours=24)
_SIGNING_KEY = b"kis-simulator: tokens survive restarts, so cached tokens stay valid"


def _error(msg_cd: str, msg1: str) -> dict[str, str]:
    return {"rt_cd": "1", "msg_cd": msg_cd, "msg1": msg1}


class Simulator:
    """Server state: token throttling per app key and counters the tests can read."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ):
        self.token_interval = token_interval
        self.clock = clock
        self.requests: Counter[str] = Counter()
        self._last_issue: dict[str, float] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kis-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- tokens ---------------------------------------------------------------------------
    @staticmethod
    def _client_id(app_key: str, app_secret: str) -> str:
        return hashlib.sha256(f"{app_key}\n{app_secret}".encode()).hexdigest()[:32]

    def issue_token(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        app_key, app_secret = body.get("appkey"), body.get("appsecret")
        if body.get("grant_type") != "client_credentials" or not app_key or not app_secret:
            return 403, {
                "error_description": "유효하지 않은 AppKey입니다.",
                "error_code": "EGW00103",
            }
        now = self.clock()
        with self._lock:
            last = self._last_issue.get(app_key)
            if last is not None and now - last < self.token_interval:
                return 403, {
                    "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
                    "error_code": "EGW00133",
                }
            self._last_issue[app_key] = now
            self.requests["token_issued"] += 1
        expires = datetime.fromtimestamp(now, SEOUL) + TOKEN_LIFETIME
        claims = {
            "sub": self._client_id(app_key, app_secret),
            "exp": int(expires.timestamp()),
            "jti": hashlib.sha256(f"{app_key}{now}".encode()).hexdigest()[:16],
        }
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        signature = hmac.new(_SIGNING_KEY, payload.encode(), hashlib.sha256).hexdigest()
        return 200, {
            "access_token": f"{payload}.{signature}",
            "access_token_token_expired": expires.strftime("%Y-%m-%d %H:%M:%S"),
            "token_type": "Bearer",
            "expires_in": int(TOKEN_LIFETIME.total_seconds()),
        }

    def token_problem(self, headers: Any) -> dict[str, str] | None:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        payload, _, signature = token.partition(".")
        expected = hmac.new(_SIGNING_KEY, payload.encode(), hashlib.sha256).hexdigest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(signature, expected):
            return _error("EGW00121", "유효하지 않은 token 입니다.")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        client = self._client_id(headers.get("appkey") or "", headers.get("appsecret") or "")
        if claims["sub"] != client:
            return _error("EGW00205", "credentials_type이 유효하지 않습니다.(Bearer)")
        if claims["exp"] <= self.clock():
            return _error("EGW00123", "기간이 만료된 token 입니다.")
        return None

    # -- the balance TR -------------------------------------------------------------------
    def balance(self, headers: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        self.requests["balance"] += 1
        problem = self.token_problem(headers)
        if problem:
            return 500, problem
        if headers.get("tr_id") != protocol.BALANCE_TR_ID:
            return 500, _error("OPSQ0002", "없는 서비스 코드 입니다")
        if headers.get("custtype") not in ("P", "B"):
            return 500, _error("OPSQ1002", "ERROR : INPUT INVALID_CHECK_CUSTTYPE")
        for name in protocol.balance_params(Account("00000000", "01")):
            if name not in query:
                return 500, _error("OPSQ2001", f"ERROR : INPUT_FIELD_NOT_FOUND [{name}]")
        try:
            account = Account.parse(f"{query['CANO'][0]}-{query['ACNT_PRDT_CD'][0]}")
        except ValueError:
            account = None
        if account is None or account.cano == "00000000":
            return 200, _error("OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO")
        today = datetime.fromtimestamp(self.clock(), SEOUL).date()
        as_of = headers.get(protocol.SIM_AS_OF_HEADER)
        day = date.fromisoformat(as_of) if as_of else today
        if day > today:
            return 200, _error("OPSQ9999", f"시뮬레이터: {day} 은(는) 아직 오지 않은 날입니다")
        return 200, balance_body(account, day)


def _handler_for(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "kis-simulator"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet; never log headers
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=UTF-8")
            self.send_header("content-length", str(len(data)))
            if self.headers.get("tr_id"):
                self.send_header("tr_id", self.headers["tr_id"])
                self.send_header("tr_cont", "D")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if urlsplit(self.path).path != protocol.TOKEN_PATH:
                self._reply(404, _error("EGW00002", "잘못된 요청입니다."))
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            self._reply(*sim.issue_token(body))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != protocol.BALANCE_PATH:
                self._reply(404, _error("EGW00002", "잘못된 요청입니다."))
                return
            self._reply(*sim.balance(self.headers, parse_qs(url.query, keep_blank_values=True)))

    return Handler


_embedded: Simulator | None = None
_embedded_lock = threading.Lock()


def embedded() -> Simulator:
    """The process-wide simulator on a free loopback port, started on first use."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            _embedded = Simulator().start()
        return _embedded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kis-simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--token-interval",
        type=float,
        default=60.0,
        help="seconds between token issuances per app key (KIS: 60)",
    )
    args = parser.parse_args(argv)
    sim = Simulator(args.host, args.port, token_interval=args.token_interval)
    print(f"KIS simulator listening on {sim.base_url}", flush=True)
    print(f"  point the pipeline at it: KIS_ENV=sim KIS_BASE_URL={sim.base_url}", flush=True)
    try:
        sim.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.server.server_close()


if __name__ == "__main__":
    main()
