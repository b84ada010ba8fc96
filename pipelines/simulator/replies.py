"""The simulator's answers as data: a reply, the service's error body, and what each transport
fault answers (as the real service's gateway would)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.kis import protocol
from pipelines.simulator.faults import Fault


def error_body(msg_cd: str, msg1: str) -> dict[str, str]:
    return {"rt_cd": "1", "msg_cd": msg_cd, "msg1": msg1}


TRANSPORT_FAULTS = frozenset(
    {
        "rate_limit",
        "expired_token",
        "token_invalid",
        "bad_account",
        "server_error",
        "html_error",
        "hang",
        "business_error",
        "paper_trading",
    }
)


PAPER_TRADING_MSG1 = "모의투자에서는 해당업무가 제공되지 않습니다"


MAINTENANCE_PAGE = (
    "<html><head><title>서비스 점검 안내</title></head><body><h1>시스템 점검 중입니다</h1>"
    "<p>보다 나은 서비스를 위해 시스템 점검을 진행하고 있습니다. 이용에 불편을 드려 "
    "죄송합니다.</p></body></html>"
)
GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    "</h1></center><hr><center>nginx</center></body></html>"
)


def fault_reply(fault: Fault) -> Reply:
    """The answer for a transport fault, as the real service's gateway would send it."""
    if fault.kind == "rate_limit":
        return Reply(500, error_body("EGW00201", "초당 거래건수를 초과하였습니다."))
    if fault.kind == "expired_token":
        return Reply(500, error_body("EGW00123", "기간이 만료된 token 입니다."))
    if fault.kind == "token_invalid":
        return Reply(500, error_body("EGW00121", "유효하지 않은 token 입니다."))
    if fault.kind == "bad_account":
        return Reply(200, error_body("OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO"))
    if fault.kind == "server_error":
        return Reply(500, "", content_type="text/plain")
    if fault.kind == "html_error":
        return Reply(502, GATEWAY_PAGE, content_type="text/html")
    if fault.kind == "business_error":
        return Reply(200, error_body("OPSQ2002", "ERROR : 조회 권한이 없는 계좌입니다"))
    if fault.kind == "paper_trading":
        return Reply(500, error_body(protocol.PAPER_TRADING_UNSUPPORTED, PAPER_TRADING_MSG1))
    assert fault.kind == "hang"
    return Reply(200, error_body("OPSQ9997", "hung response"), delay=float(fault.arg or 30))


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    tr_cont: str = "D"
    content_type: str = "application/json; charset=UTF-8"
    delay: float = 0.0
