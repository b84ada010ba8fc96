"""Wire protocol of TR CTRP6548R (투자계좌자산현황조회) and KIS token issuance, as plain data.
(The KIS errors, now in pipelines/errors.py, can still be imported from here.)"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipelines.errors import KisBudgetError as KisBudgetError
from pipelines.errors import KisDeadlineError as KisDeadlineError
from pipelines.errors import KisError as KisError
from pipelines.errors import KisProtocolError, KisServerError
from pipelines.errors import KisRedirectError as KisRedirectError
from pipelines.errors import KisTooLargeError as KisTooLargeError
from pipelines.errors import KisTransientError as KisTransientError
from pipelines.kis import answers

REAL_BASE_URL = "https://openapi.koreainvestment.com:9443"
#: KIS's paper-trading (모의투자) server, which does not offer this TR.
PAPER_TRADING_HOST = "openapivts.koreainvestment.com"
#: What the paper-trading server answers for a TR it does not offer.
PAPER_TRADING_UNSUPPORTED = "90000000"
PAPER_TRADING_ADVICE = (
    "KIS paper trading (모의투자) does not offer TR CTRP6548R (투자계좌자산현황조회), so nobody "
    "can try it without a real account. Use the real domain "
    f"{REAL_BASE_URL} with a real account's app key (KIS_ENV=real), or the project's "
    "simulator: leave KIS_ENV and KIS_BASE_URL unset for the embedded one, or run "
    "`make simulator` and point KIS_BASE_URL at it."
)
TOKEN_PATH = "/oauth2/tokenP"
BALANCE_PATH = "/uapi/domestic-stock/v1/trading/inquire-account-balance"
BALANCE_TR_ID = "CTRP6548R"

#: Header only the project's simulator understands: answer as of this date (YYYY-MM-DD).
SIM_AS_OF_HEADER = "x-kis-sim-as-of"

#: output1 amount fields, in the spec's order.
OUTPUT1_FIELDS: tuple[str, ...] = (
    "pchs_amt",
    "evlu_amt",
    "evlu_pfls_amt",
    "crdt_lnd_amt",
    "real_nass_amt",
    "whol_weit_rt",
)

#: output2 fields with their Korean names, in the spec's order.
OUTPUT2_FIELDS: dict[str, str] = {
    "pchs_amt_smtl": "매입금액합계",
    "nass_tot_amt": "순자산총금액",
    "loan_amt_smtl": "대출금액합계",
    "evlu_pfls_amt_smtl": "평가손익금액합계",
    "evlu_amt_smtl": "평가금액합계",
    "tot_asst_amt": "총자산금액",
    "tot_lnda_tot_ulst_lnda": "총대출금액총융자대출금액",
    "cma_auto_loan_amt": "CMA자동대출금액",
    "tot_mgln_amt": "총담보대출금액",
    "stln_evlu_amt": "대주평가금액",
    "crdt_fncg_amt": "신용융자금액",
    "ocl_apl_loan_amt": "OCL_APL대출금액",
    "pldg_stup_amt": "질권설정금액",
    "frcr_evlu_tota": "외화평가총액",
    "tot_dncl_amt": "총예수금액",
    "cma_evlu_amt": "CMA평가금액",
    "dncl_amt": "예수금액",
    "tot_sbst_amt": "총대용금액",
    "thdt_rcvb_amt": "당일미수금액",
    "ovrs_stck_evlu_amt1": "해외주식평가금액1",
    "ovrs_bond_evlu_amt": "해외채권평가금액",
    "mmf_cma_mgge_loan_amt": "MMFCMA담보대출금액",
    "sbsc_dncl_amt": "청약예수금액",
    "pbst_sbsc_fnds_loan_use_amt": "공모주청약자금대출사용금액",
    "etpr_crdt_grnt_loan_amt": "기업신용공여대출금액",
}


@dataclass(frozen=True, order=True)
class Account:
    """A KIS account number in its 8-2 form: CANO (8 digits) and ACNT_PRDT_CD (2 digits)."""

    cano: str
    product_code: str

    @classmethod
    def parse(cls, text: str) -> Account:
        cano, sep, product_code = text.strip().partition("-")
        if not (
            sep
            and len(cano) == 8
            and len(product_code) == 2
            and (cano + product_code).isascii()
            and (cano + product_code).isdigit()
        ):
            raise ValueError(
                f"account {text.strip()!r} is not of the form CANO-ACNT_PRDT_CD "
                "(8 digits, a hyphen, 2 digits), e.g. 12345678-01"
            )
        return cls(cano, product_code)

    @property
    def id(self) -> str:
        return f"{self.cano}-{self.product_code}"

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class CorporateIdentity:
    """Headers KIS requires of corporate customers (custtype B); gt_uid is new per request."""

    personalseckey: str = field(repr=False)
    phone_number: str
    ip_addr: str
    seq_no: str = "001"
    mac_address: str = ""

    def headers(self) -> dict[str, str]:
        headers = {
            "personalseckey": self.personalseckey,
            "seq_no": self.seq_no,
            "phone_number": self.phone_number,
            "ip_addr": self.ip_addr,
            "gt_uid": uuid.uuid4().hex,
        }
        if self.mac_address:
            headers["mac_address"] = self.mac_address
        return headers


def balance_params(account: Account) -> dict[str, str]:
    """Query parameters: the two 공백입력 keys are sent present and empty, as the vendor does."""
    return {
        "CANO": account.cano,
        "ACNT_PRDT_CD": account.product_code,
        "INQR_DVSN_1": "",
        "BSPR_BF_DT_APLY_YN": "",
    }


def is_paper_trading_url(url: str) -> bool:
    """Whether a base URL points at KIS's paper-trading server (any scheme or port)."""
    host = urlsplit(url if "://" in url else f"//{url}").hostname or ""
    return host.rstrip(".").lower() == PAPER_TRADING_HOST


class KisApiError(KisServerError):
    """The service answered rt_cd != "0" (whatever the HTTP status).

    An answer that says the TR is not offered in paper trading (msg_cd 90000000, or a msg1
    about 모의투자) carries the explanation and what to use instead after msg_cd and msg1; any
    other known msg_cd (pipelines.kis.answers) carries what to check.
    """

    def __init__(self, *, what: str, rt_cd: str, msg_cd: str, msg1: str, http_status: int):
        self.what, self.rt_cd, self.msg_cd, self.msg1 = what, rt_cd, msg_cd, msg1.strip()
        self.http_status = http_status
        message = (
            f"{what}: KIS answered rt_cd={rt_cd!r} msg_cd={msg_cd!r} msg1={self.msg1!r} "
            f"(HTTP {http_status})"
        )
        if self.is_paper_trading_refusal:
            message += f". {PAPER_TRADING_ADVICE}"
        elif advice := answers.advice(msg_cd):
            message += f": {advice}"
        super().__init__(message)

    @property
    def is_paper_trading_refusal(self) -> bool:
        return self.msg_cd == PAPER_TRADING_UNSUPPORTED or "모의투자" in self.msg1


def said_of(error: KisError, subject: str) -> KisError:
    """`error` of the same class, its message led by `subject` (`subject: …`); a KisApiError
    keeps its fields (msg_cd, msg1, …) so its advice still follows."""
    if isinstance(error, KisApiError):
        return KisApiError(
            what=f"{subject}: {error.what}",
            rt_cd=error.rt_cd,
            msg_cd=error.msg_cd,
            msg1=error.msg1,
            http_status=error.http_status,
        )
    return type(error)(f"{subject}: {error}")


def body_key(body: dict[str, Any], key: str) -> Any:
    """A body value under its lowercase key or the spec's capitalised spelling (Output1)."""
    if key in body:
        return body[key]
    return body.get(key[:1].upper() + key[1:])


def parse_body(text: str, *, what: str, http_status: int) -> dict[str, Any]:
    """Decode a response body, raising a KisError that says what the server sent instead."""
    try:
        body = json.loads(text)
    except ValueError:
        snippet = " ".join(text.split())[:200]
        raise KisProtocolError(
            f"{what}: HTTP {http_status} with a body that is not JSON: {snippet!r}"
        ) from None
    if not isinstance(body, dict):
        raise KisProtocolError(f"{what}: HTTP {http_status} with a JSON body that is not an object")
    return body


def check_rt_cd(body: dict[str, Any], *, what: str, http_status: int) -> None:
    rt_cd = body.get("rt_cd")
    if rt_cd != "0":
        raise KisApiError(
            what=what,
            rt_cd=str(rt_cd),
            msg_cd=str(body.get("msg_cd", "")),
            msg1=str(body.get("msg1", "")),
            http_status=http_status,
        )
