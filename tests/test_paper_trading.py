"""KIS paper trading (모의투자) does not offer CTRP6548R: the settings refuse its server, and an
answer with msg_cd 90000000 from any server says so, over real loopback HTTP."""

from __future__ import annotations

import pytest

from pipelines.ingest.fetch import today_in_seoul
from pipelines.kis import protocol
from pipelines.kis.client import Credentials, KisClient
from pipelines.kis.protocol import Account, KisApiError
from pipelines.kis.ratelimit import RateLimiter
from pipelines.kis.retry import Backoff
from pipelines.kis.tokens import TokenCache
from pipelines.settings import Settings, SettingsError
from pipelines.simulator.server import Simulator
from tests.runs import failure, materialize

ACCOUNT = Account("12345678", "01")
PAPER_MSG1 = "모의투자에서는 해당업무가 제공되지 않습니다"
SECRET = "paper-settings-secret-value"


def assert_explains_paper_trading(text: str) -> None:
    for part in (
        "paper trading (모의투자) does not offer TR CTRP6548R",
        "without a real account",
        protocol.REAL_BASE_URL,
        "leave KIS_ENV and KIS_BASE_URL unset",
        "make simulator",
    ):
        assert part in text, (part, text)


@pytest.mark.parametrize(
    "url",
    [
        "https://openapivts.koreainvestment.com:29443",
        "https://openapivts.koreainvestment.com:9443/",
        "http://OpenAPIvts.koreainvestment.com",
        "openapivts.koreainvestment.com:29443",
    ],
)
@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"KIS_ENV": "real", "KIS_APP_KEY": "PSkey", "KIS_APP_SECRET": SECRET, "KIS_ACCOUNTS": ""},
        {"KIS_ENV": "sim"},
    ],
    ids=["unset", "real-missing-accounts", "sim"],
)
def test_settings_refuse_the_paper_trading_server(url: str, environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**environ, "KIS_BASE_URL": url})
    message = str(caught.value)
    assert url in message
    assert_explains_paper_trading(message)
    assert SECRET not in message


@pytest.mark.parametrize(
    "url",
    [
        protocol.REAL_BASE_URL,
        "http://127.0.0.1:8765",
        "https://openapivts.koreainvestment.com.example.net",
        "https://example.net/openapivts.koreainvestment.com",
    ],
)
def test_other_servers_are_not_mistaken_for_paper_trading(url: str) -> None:
    assert Settings.from_env({"KIS_ENV": "sim", "KIS_BASE_URL": url}).base_url == url.rstrip("/")


def test_paper_trading_answer_is_explained_and_not_retried(token_cache: TokenCache) -> None:
    with Simulator(faults=f"{ACCOUNT.id}:paper_trading") as sim:
        client = KisClient(
            sim.base_url,
            Credentials("PSpaperKey", "paper-secret"),
            token_cache=token_cache,
            backoff=Backoff(attempts=5, base=0.01, cap=0.02),
            rate_limiter=RateLimiter(1000),
        )
        with pytest.raises(KisApiError) as caught:
            client.inquire_account_balance(ACCOUNT)
        assert sim.requests["balance"] == 1
        assert sim.requests["fault_paper_trading"] == 1
    error = caught.value
    assert (error.rt_cd, error.msg_cd, error.msg1, error.http_status) == (
        "1",
        "90000000",
        PAPER_MSG1,
        500,
    )
    message = str(error)
    assert ACCOUNT.id in message
    assert f"msg_cd='90000000' msg1='{PAPER_MSG1}'" in message  # verbatim, before the advice
    assert_explains_paper_trading(message)
    assert "paper-secret" not in message
    assert not any(key.startswith("retries") for key in client.events)


@pytest.mark.parametrize(
    ("msg_cd", "msg1", "explained"),
    [
        ("90000000", "anything", True),
        ("OPSQ0002", "모의투자 TR 이 아닙니다.", True),
        ("OPSQ2002", "ERROR : 조회 권한이 없는 계좌입니다", False),
    ],
)
def test_only_paper_trading_refusals_carry_the_explanation(
    msg_cd: str, msg1: str, explained: bool
) -> None:
    error = KisApiError(what="account x", rt_cd="1", msg_cd=msg_cd, msg1=msg1, http_status=200)
    assert error.is_paper_trading_refusal is explained
    assert ("does not offer TR CTRP6548R" in str(error)) is explained
    assert str(error).startswith(f"account x: KIS answered rt_cd='1' msg_cd={msg_cd!r}")


def test_a_run_against_a_paper_trading_answer_fails_with_the_explanation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KIS_SIM_FAULTS", "12345678-21:paper_trading")
    result = materialize(today_in_seoul())
    assert not result.success
    description, metadata = failure(result)
    assert "12345678-21" in description
    assert_explains_paper_trading(description)
    failed = metadata["failed_accounts"]["12345678-21"]
    assert (failed["msg_cd"], failed["msg1"]) == ("90000000", PAPER_MSG1)
    assert_explains_paper_trading(failed["error"])
