"""The KIS answers people meet, as one data table: what each msg_cd means, which setting to
check, whether it fails one account or every account of the app key, and how sure we are.

docs/kis-errors.md is this table for readers; the simulator has a fault for each code
(`fault`), so every line can be rehearsed with KIS_SIM_FAULTS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: Where an account's app key and secret are set: the defaults, or its own in the accounts file.
APP_KEY_SETTING = "KIS_APP_KEY (or this key's app_key_env in KIS_ACCOUNTS_FILE)"
APP_SECRET_SETTING = "KIS_APP_SECRET (or this key's app_secret_env in KIS_ACCOUNTS_FILE)"
TOKEN_CACHE = "~/.cache/kis-balance-history/tokens/ ($XDG_CACHE_HOME)"


class Scope(enum.Enum):
    """What an answer fails: the app key's every account (its token, its key), or one account."""

    KEY = "every account of the app key"
    ACCOUNT = "the account"


class Certainty(enum.Enum):
    """How sure we are of what a code means, and of its wording."""

    DOCUMENTED = "documented: in KIS's material or kis-api-facts.md"
    REPORTED = "reported: users of the vendor sample and its Python wrappers quote it"
    ASSUMED = "assumed: from the wording only; no answer seen (the simulator's own choice)"


@dataclass(frozen=True)
class KnownAnswer:
    msg_cd: str
    #: What KIS sends as msg1 (token issuance: error_description), as quoted.
    msg1: str
    meaning: str
    #: What to check or do: the setting by its name.
    check: str
    scope: Scope
    certainty: Certainty
    #: The simulator's KIS_SIM_FAULTS kind that answers it (target `*` for token faults).
    fault: str


KNOWN_ANSWERS: dict[str, KnownAnswer] = {
    answer.msg_cd: answer
    for answer in (
        KnownAnswer(
            "EGW00103",
            "유효하지 않은 AppKey입니다.",
            "the app key is not one KIS knows (mistyped, or of another service)",
            f"check {APP_KEY_SETTING}: the app key of the KIS Developers portal, whole",
            Scope.KEY,
            Certainty.REPORTED,
            "bad_appkey",
        ),
        KnownAnswer(
            "EGW00105",
            "유효하지 않은 AppSecret입니다.",
            "the app secret does not belong to the app key",
            f"check {APP_SECRET_SETTING}: the secret issued with this app key, whole",
            Scope.KEY,
            Certainty.REPORTED,
            "bad_secret",
        ),
        KnownAnswer(
            "EGW00121",
            "유효하지 않은 token 입니다.",
            "the access token was refused (not one this server issued, or another key's); a "
            "new one was issued once and refused again",
            f"check that KIS_BASE_URL is the server that issued it and that {APP_KEY_SETTING} "
            f"and {APP_SECRET_SETTING} are the current ones; the cached token is in "
            f"{TOKEN_CACHE}",
            Scope.KEY,
            Certainty.REPORTED,
            "token_invalid",
        ),
        KnownAnswer(
            "EGW00123",
            "기간이 만료된 token 입니다.",
            "the access token expired or was revoked (a new app key, maintenance); a new one "
            "was issued once and refused again",
            f"check on the KIS Developers portal that the app key is still active and that "
            f"{APP_KEY_SETTING} and {APP_SECRET_SETTING} are the current ones",
            Scope.KEY,
            Certainty.DOCUMENTED,
            "expired_token",
        ),
        KnownAnswer(
            "EGW00133",
            "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
            "a token may be issued once a minute per app key; another program (or run) using "
            "this app key issued one within the minute, and waiting it out did not help",
            "stop other programs issuing tokens with this app key, wait a minute and run again",
            Scope.KEY,
            Certainty.DOCUMENTED,
            "token_throttle",
        ),
        KnownAnswer(
            "EGW00201",
            "초당 거래건수를 초과하였습니다.",
            "over the per-second request limit of the app key (20/s real), after retries",
            "lower KIS_RATE_LIMIT (default 18), or stop other programs using this app key at the "
            "same time",
            Scope.ACCOUNT,
            Certainty.DOCUMENTED,
            "rate_limit",
        ),
        KnownAnswer(
            "OPSQ2000",
            "ERROR : INPUT INVALID_CHECK_ACNO",
            "the account number is not valid for this app key",
            "check the account's CANO-ACNT_PRDT_CD in KIS_ACCOUNTS or KIS_ACCOUNTS_FILE, and "
            "that the app key was issued for this account",
            Scope.ACCOUNT,
            Certainty.DOCUMENTED,
            "bad_account",
        ),
        KnownAnswer(
            "OPSQ2002",
            "ERROR : 조회 권한이 없는 계좌입니다",
            "the app key may not read this account",
            "check that the account is registered for this app key on the KIS Developers portal, "
            "or give it its own app_key_env/app_secret_env in KIS_ACCOUNTS_FILE",
            Scope.ACCOUNT,
            Certainty.ASSUMED,
            "business_error",
        ),
        KnownAnswer(
            "90000000",
            "모의투자에서는 해당업무가 제공되지 않습니다",
            "the paper-trading (모의투자) server does not offer this TR",
            "set KIS_BASE_URL to the real domain (or unset it) with a real account's app key",
            Scope.KEY,
            Certainty.REPORTED,
            "paper_trading",
        ),
    )
}


def advice(msg_cd: str) -> str | None:
    """What to check for a known msg_cd, as one clause ("check …"), or None."""
    known = KNOWN_ANSWERS.get(msg_cd.strip())
    return known.check if known else None


def fails_every_account_of_the_key(msg_cd: str) -> bool:
    """Whether this answer for one account will be the answer for each of its key's accounts."""
    known = KNOWN_ANSWERS.get(msg_cd.strip())
    return known is not None and known.scope is Scope.KEY


#: What to check when the server cannot be reached, or accepts and never answers.
UNREACHABLE_ADVICE = "check KIS_BASE_URL and this machine's network (nothing answers there)"
SILENT_ADVICE = (
    "check KIS_BASE_URL (something accepts connections there but does not answer within "
    "KIS_REQUEST_DEADLINE); KIS may be in maintenance: run again later"
)
