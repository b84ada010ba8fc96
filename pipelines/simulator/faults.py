"""FaultPlan: faults the simulator injects, per account or for every account, by spec string.

Spec: comma-separated `TARGET:KIND[*TIMES][=ARG]`, where TARGET is an account id
(CANO-ACNT_PRDT_CD) or `*`, TIMES how many requests the fault hits (default: every one), and
ARG a number for the kinds that take one. Examples:
  `*:rate_limit*2`             the next two balance requests are refused with EGW00201
  `12345678-01:html_error*1`   one gateway HTML page (HTTP 502) for that account
  `12345678-21:pages=3`        that account's output1 comes in three pages (tr_cont M, M, D)
  `*:maintenance=120`          a maintenance page for everything during the first two minutes
  `*:bad_secret`               every token issuance refused as for a wrong app secret (EGW00105)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pipelines.errors import FaultSpecError

#: kind → what the simulator does (and the default ARG where the kind takes one)
KINDS: dict[str, str] = {
    "rate_limit": "HTTP 500, rt_cd 1, EGW00201 초당 거래건수를 초과하였습니다.",
    "token_throttle": "token issuance refused with EGW00133 (target `*`)",
    "bad_appkey": "HTTP 403, EGW00103 유효하지 않은 AppKey입니다. for token issuance (target "
    "`*`) and balance requests (a cached token does not help)",
    "bad_secret": "HTTP 403, EGW00105 유효하지 않은 AppSecret입니다. for token issuance (target "
    "`*`) and balance requests (a cached token does not help)",
    "expired_token": "HTTP 500, rt_cd 1, EGW00123 기간이 만료된 token 입니다.",
    "token_invalid": "HTTP 500, rt_cd 1, EGW00121 유효하지 않은 token 입니다.",
    "bad_account": "HTTP 200, rt_cd 1, OPSQ2000 ERROR : INPUT INVALID_CHECK_ACNO",
    "server_error": "HTTP 500 with an empty body",
    "html_error": "HTTP 502 with a gateway's HTML error page",
    "hang": "answer only after ARG seconds (default 30)",
    "slow": "a normal answer after ARG seconds (default 0.1): a distant server's latency",
    "business_error": "rt_cd 1 with msg_cd OPSQ2002 (not transient)",
    "paper_trading": "HTTP 500, rt_cd 1, 90000000 모의투자에서는 해당업무가 제공되지 않습니다 "
    "(what KIS's paper-trading server answers for a TR it does not offer)",
    "pages": "output1 split over ARG pages (default 2), continued with tr_cont",
    "row_count": "output1 with the IMA row left out (the 19/16-row layout of KIS's sample)",
    "extra_row": "output1 with one zero row more before 합계 (a row count no layout has)",
    "fx_sum": "holds every foreign-currency row, and frcr_evlu_tota is their sum",
    "bad_total": "the 합계 row's evlu_amt off by ARG won (default 1): totals no longer add up",
    "maintenance": "HTTP 503 with a maintenance HTML page for every request (tokens too, with "
    "target `*`) until ARG seconds (default 60) after the simulator's first request; TIMES "
    "does not apply",
}
DEFAULT_ARGS = {"hang": 30.0, "slow": 0.1, "pages": 2.0, "bad_total": 1.0, "maintenance": 60.0}


@dataclass
class Fault:
    target: str
    kind: str
    remaining: int | None  # None: every request
    arg: float | None

    def __str__(self) -> str:
        times = "" if self.remaining is None else f"*{self.remaining}"
        arg = "" if self.arg is None else f"={self.arg:g}"
        return f"{self.target}:{self.kind}{times}{arg}"


class FaultPlan:
    def __init__(self, faults: list[Fault] | None = None):
        self.faults = faults or []
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str | None) -> FaultPlan:
        faults = []
        for item in (spec or "").split(","):
            if not item.strip():
                continue
            target, sep, rest = item.strip().partition(":")
            rest, _, arg = rest.partition("=")
            kind, _, times = rest.partition("*")
            if not sep or kind not in KINDS:
                raise FaultSpecError(
                    f"fault {item.strip()!r}: expected TARGET:KIND[*TIMES][=ARG] with KIND one "
                    f"of {', '.join(KINDS)}"
                )
            try:
                remaining = int(times) if times else None
                value = float(arg) if arg else DEFAULT_ARGS.get(kind)
            except ValueError:
                raise FaultSpecError(f"fault {item.strip()!r}: TIMES and ARG are numbers") from None
            faults.append(Fault(target, kind, remaining, value))
        return cls(faults)

    def take(self, account_id: str, kinds: frozenset[str] | set[str]) -> Fault | None:
        """The first live fault of one of `kinds` for the account, used up by one request."""
        with self._lock:
            for fault in self.faults:
                if (
                    fault.kind in kinds
                    and fault.target in (account_id, "*")
                    and (fault.remaining is None or fault.remaining > 0)
                ):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def find(self, account_id: str, kind: str) -> Fault | None:
        """The first fault of `kind` for the account (or `*`), without using it up."""
        with self._lock:
            for fault in self.faults:
                if fault.kind == kind and fault.target in (account_id, "*"):
                    return fault
        return None

    def __str__(self) -> str:
        return ",".join(map(str, self.faults))
