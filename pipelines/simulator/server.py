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
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipelines.errors import FaultSpecError
from pipelines.kis import protocol
from pipelines.kis.protocol import Account
from pipelines.kis.tokens import SEOUL
from pipelines.simulator.app_keys import BAD_APP_KEY, parse_pairs, refusal
from pipelines.simulator.faults import KINDS, FaultPlan
from pipelines.simulator.portfolio import balance_body, foreign_rows_summed, without_ima
from pipelines.simulator.replies import (
    MAINTENANCE_PAGE,
    TRANSPORT_FAULTS,
    Reply,
    error_body,
    fault_reply,
)

TOKEN_LIFETIME = timedelta(hours=24)
_SIGNING_KEY = b"kis-simulator: tokens survive restarts, so cached tokens stay valid"


class Simulator:
    """Server state: token throttling per app key and counters the tests can read."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_interval: float = 60.0,
        rate_limit: float | None = 20.0,
        faults: FaultPlan | str | None = None,
        clock: Callable[[], float] = time.time,
        app_keys: Mapping[str, str] | None = None,
    ):
        self.token_interval = token_interval
        self.rate_limit = rate_limit
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        self.fault_spec = str(faults or "")
        self.clock = clock
        #: app key → secret, the only ones accepted (app_keys.refusal); None: any will do
        self.app_keys = dict(app_keys) if app_keys is not None else None
        self.requests: Counter[str] = Counter()
        #: Balance requests being answered now, and the most at once: per app key and "*".
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()
        self._last_issue: dict[str, float] = {}
        self._recent: dict[str, deque[float]] = {}
        self._gt_uids: set[str] = set()
        self._cursors: dict[tuple[str, str], int] = {}
        self._page_counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        #: When the first request arrived (time.monotonic): a maintenance fault counts from it.
        self.first_request_at: float | None = None
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

    def _enter(self, app_key: str) -> None:
        with self._lock:
            for key in (app_key, "*"):
                self.in_flight[key] += 1
                self.peak_in_flight[key] = max(self.peak_in_flight[key], self.in_flight[key])

    def _leave(self, app_key: str) -> None:
        with self._lock:
            for key in (app_key, "*"):
                self.in_flight[key] -= 1

    # -- tokens ---------------------------------------------------------------------------
    @staticmethod
    def _client_id(app_key: str, app_secret: str) -> str:
        return hashlib.sha256(f"{app_key}\n{app_secret}".encode()).hexdigest()[:32]

    def in_maintenance(self, account_id: str) -> bool:
        """Whether a `maintenance` fault still covers this request (`*` for a token request)."""
        now = time.monotonic()
        with self._lock:
            if self.first_request_at is None:
                self.first_request_at = now
            elapsed = now - self.first_request_at
        fault = self.faults.find(account_id, "maintenance")
        if fault is None or elapsed >= (fault.arg or 0):
            return False
        self.requests["maintenance"] += 1
        return True

    def issue_token(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        app_key, app_secret = body.get("appkey"), body.get("appsecret")
        if body.get("grant_type") != "client_credentials" or not app_key or not app_secret:
            return 403, {"error_description": BAD_APP_KEY[1], "error_code": BAD_APP_KEY[0]}
        refused = refusal(self.faults, "*", self.app_keys, app_key, app_secret)
        if refused:
            self.requests[f"token_refused {refused[0]}"] += 1
            return 403, {"error_description": refused[1], "error_code": refused[0]}
        now = self.clock()
        throttled = self.faults.take("*", {"token_throttle"})
        with self._lock:
            last = self._last_issue.get(app_key)
            if throttled or (last is not None and now - last < self.token_interval):
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
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            signature.encode(), expected.encode()
        ):
            return error_body("EGW00121", "유효하지 않은 token 입니다.")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        client = self._client_id(headers.get("appkey") or "", headers.get("appsecret") or "")
        if claims["sub"] != client:
            return error_body("EGW00205", "credentials_type이 유효하지 않습니다.(Bearer)")
        if claims["exp"] <= self.clock():
            return error_body("EGW00123", "기간이 만료된 token 입니다.")
        return None

    # -- the balance TR -------------------------------------------------------------------
    def _over_rate_limit(self, app_key: str) -> bool:
        """Sliding one-second window per app key, as KIS counts 초당 거래건수."""
        if self.rate_limit is None:
            return False
        now = time.monotonic()
        with self._lock:
            recent = self._recent.setdefault(app_key, deque())
            while recent and now - recent[0] >= 1.0:
                recent.popleft()
            if len(recent) >= self.rate_limit:
                return True
            recent.append(now)
            return False

    def _corporate_problem(self, headers: Any) -> dict[str, str] | None:
        for name in ("personalseckey", "seq_no", "phone_number", "ip_addr", "gt_uid"):
            if not headers.get(name):
                return error_body("OPSQ1003", f"ERROR : INPUT_FIELD_NOT_FOUND [{name}] (법인 필수)")
        with self._lock:
            if headers["gt_uid"] in self._gt_uids:
                return error_body("OPSQ1004", "ERROR : DUPLICATE gt_uid (거래별로 UNIQUE해야 함)")
            self._gt_uids.add(headers["gt_uid"])
        return None

    def balance(self, headers: Any, query: dict[str, list[str]]) -> Reply:
        self.requests["balance"] += 1
        account_id = f"{query.get('CANO', [''])[0]}-{query.get('ACNT_PRDT_CD', [''])[0]}"
        self.requests[f"balance {account_id}"] += 1
        if self.in_maintenance(account_id):
            return MAINTENANCE
        if self._over_rate_limit(headers.get("appkey") or ""):
            self.requests["rate_limited"] += 1
            return Reply(500, error_body("EGW00201", "초당 거래건수를 초과하였습니다."))
        problem = self.token_problem(headers)
        if problem:
            return Reply(500, problem)
        if headers.get("tr_id") != protocol.BALANCE_TR_ID:
            return Reply(500, error_body("OPSQ0002", "없는 서비스 코드 입니다"))
        custtype = headers.get("custtype")
        if custtype not in ("P", "B"):
            return Reply(500, error_body("OPSQ1002", "ERROR : INPUT INVALID_CHECK_CUSTTYPE"))
        if custtype == "B":
            problem = self._corporate_problem(headers)
            if problem:
                return Reply(500, problem)
        for name in protocol.balance_params(Account("00000000", "01")):
            if name not in query:
                return Reply(500, error_body("OPSQ2001", f"ERROR : INPUT_FIELD_NOT_FOUND [{name}]"))
        try:
            account = Account.parse(f"{query['CANO'][0]}-{query['ACNT_PRDT_CD'][0]}")
        except ValueError:
            account = None
        if account is None or account.cano == "00000000":
            return Reply(200, error_body("OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO"))
        today = datetime.fromtimestamp(self.clock(), SEOUL).date()
        as_of = headers.get(protocol.SIM_AS_OF_HEADER)
        try:
            day = date.fromisoformat(as_of) if as_of else today
        except ValueError:
            return Reply(
                200, error_body("OPSQ9998", f"시뮬레이터: {as_of!r} 은(는) 날짜가 아닙니다")
            )
        if day > today:
            return Reply(
                200, error_body("OPSQ9999", f"시뮬레이터: {day} 은(는) 아직 오지 않은 날입니다")
            )
        fault = self.faults.take(account.id, TRANSPORT_FAULTS)
        if fault:
            self.requests[f"fault_{fault.kind}"] += 1
            return fault_reply(fault)
        refused = refusal(self.faults, account.id)
        if refused:  # a token cached before the key or secret went wrong: refused all the same
            return Reply(403, error_body(*refused))
        body = balance_body(account, day)
        slow = self.faults.take(account.id, {"slow"})
        fault = self.faults.take(account.id, {"bad_total"})
        if fault:
            self.requests["fault_bad_total"] += 1
            total = body["output1"][-1]
            total["evlu_amt"] = str(int(total["evlu_amt"]) + int(fault.arg or 1))
        if self.faults.take(account.id, {"fx_sum"}):
            self.requests["fault_fx_sum"] += 1
            body = foreign_rows_summed(account, body)
        if self.faults.take(account.id, {"row_count"}):
            self.requests["fault_row_count"] += 1
            body = without_ima(account, body)
        if self.faults.take(account.id, {"extra_row"}):
            self.requests["fault_extra_row"] += 1
            body["output1"].insert(-1, dict.fromkeys(body["output1"][-1], "0"))
        reply = self._page(headers, account, body)
        if slow:
            reply.delay = float(slow.arg or 0)
        return reply

    def _page(self, headers: Any, account: Account, body: dict[str, Any]) -> Reply:
        """The whole body, or with a `pages` fault the next slice of output1 (tr_cont M/D)."""
        key = (headers.get("appkey") or "", account.id)
        fault = self.faults.take(account.id, {"pages"}) if headers.get("tr_cont") != "N" else None
        with self._lock:
            if fault:
                self._cursors[key] = 0
            elif headers.get("tr_cont") != "N" or key not in self._cursors:
                self._cursors.pop(key, None)
                return Reply(200, body)
            rows = body["output1"]
            count = int(fault.arg or 2) if fault else self._page_counts[key]
            self._page_counts[key] = count
            index = self._cursors[key]
            size = -(-len(rows) // count)
            body["output1"] = rows[index * size : (index + 1) * size]
            last = index + 1 >= count
            if last:
                del self._cursors[key]
            else:
                self._cursors[key] = index + 1
        return Reply(200, body, tr_cont="D" if last else "M")


def _handler_for(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "kis-simulator"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet; never log headers
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            self._send(Reply(status, body))

        def _send(self, reply: Reply) -> None:
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.body
            text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
            data = text.encode()
            try:
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(data)))
                if self.headers.get("tr_id"):
                    self.send_header("tr_id", self.headers["tr_id"])
                    self.send_header("tr_cont", reply.tr_cont)
                if self.headers.get("gt_uid"):
                    self.send_header("gt_uid", self.headers["gt_uid"])
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a hang fault outlived its read timeout)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if urlsplit(self.path).path != protocol.TOKEN_PATH:
                self._reply(404, error_body("EGW00002", "잘못된 요청입니다."))
                return
            if sim.in_maintenance("*"):
                self._send(MAINTENANCE)
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            self._reply(*sim.issue_token(body))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != protocol.BALANCE_PATH:
                self._reply(404, error_body("EGW00002", "잘못된 요청입니다."))
                return
            app_key = self.headers.get("appkey") or ""
            sim._enter(app_key)
            try:
                self._send(sim.balance(self.headers, parse_qs(url.query, keep_blank_values=True)))
            finally:
                sim._leave(app_key)

    return Handler


MAINTENANCE = Reply(503, MAINTENANCE_PAGE, content_type="text/html; charset=UTF-8")

_embedded: Simulator | None = None
_embedded_lock = threading.Lock()


def embedded(faults: str = "") -> Simulator:
    """The process-wide simulator on a free loopback port, started on first use.

    `faults` (KIS_SIM_FAULTS) replaces its fault plan when it differs from the current one.
    """
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            _embedded = Simulator(faults=faults).start()
        elif faults != _embedded.fault_spec:
            _embedded.faults = FaultPlan.parse(faults)
            _embedded.fault_spec = faults
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
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=20.0,
        help="balance requests per second per app key (KIS: 20; 0: unlimited)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="TARGET:KIND[*TIMES][=ARG]",
        help="inject a fault (repeatable); KIND is one of: "
        + "; ".join(f"{kind} ({what})" for kind, what in KINDS.items()),
    )
    parser.add_argument(
        "--app-key",
        action="append",
        default=[],
        metavar="APP_KEY=APP_SECRET",
        help="accept only these app keys, each with its secret (repeatable): another key is "
        "refused with EGW00103, a wrong secret with EGW00105 (default: any key and secret)",
    )
    args = parser.parse_args(argv)
    try:
        faults = FaultPlan.parse(",".join(args.fault))
    except FaultSpecError as error:
        parser.error(str(error))
    try:
        accepted = parse_pairs(args.app_key)
    except ValueError as error:
        parser.error(str(error))
    sim = Simulator(
        args.host,
        args.port,
        token_interval=args.token_interval,
        rate_limit=args.rate_limit or None,
        faults=faults,
        app_keys=accepted,
    )
    print(f"KIS simulator listening on {sim.base_url}", flush=True)
    print(f"  point the pipeline at it: KIS_ENV=sim KIS_BASE_URL={sim.base_url}", flush=True)
    if sim.faults.faults:
        print(f"  injecting faults: {sim.faults}", flush=True)
    try:
        sim.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.server.server_close()


if __name__ == "__main__":
    main()
