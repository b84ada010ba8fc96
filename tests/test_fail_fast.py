"""Known KIS answers read as one line with what to check, the simulator answers each of them,
and a failure that is the app key's (its token, its server) fails the key's accounts at once:
a wrong secret and a closed port within seconds, a silent server within one request deadline
per key, each said in one line naming the key's accounts."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.ingest.fetch import fetch_and_land, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis import answers
from pipelines.kis.client import Credentials, KisClient
from pipelines.kis.protocol import Account, KisApiError
from pipelines.kis.retry import Backoff
from pipelines.kis.tokens import Token, TokenCache
from pipelines.settings import Settings
from pipelines.simulator.faults import KINDS
from pipelines.simulator.server import Simulator
from pipelines.simulator.server import main as simulator_main
from tests.runs import Ran, failure, materialize, run_command

ACCOUNT = Account("12345678", "01")
RIGHT = Credentials("APP-KEY-RIGHT", "secret-right")


def client_for(sim: Simulator, tmp_path: Path, credentials: Credentials = RIGHT) -> KisClient:
    return KisClient(
        sim.base_url,
        credentials,
        token_cache=TokenCache(tmp_path / "tokens"),
        backoff=Backoff(attempts=2, base=0.01, cap=0.02),
        token_throttle_wait=0.01,
    )


@pytest.mark.parametrize("known", answers.KNOWN_ANSWERS.values(), ids=lambda known: known.msg_cd)
def test_the_simulator_answers_each_known_code_and_the_error_says_what_to_check(
    known: answers.KnownAnswer, tmp_path: Path
) -> None:
    assert known.fault in KINDS
    with (
        Simulator(faults=f"*:{known.fault}", token_interval=0) as sim,
        pytest.raises(KisApiError) as caught,
    ):
        client_for(sim, tmp_path).inquire_account_balance(ACCOUNT)
    error = caught.value
    assert error.msg_cd == known.msg_cd
    assert error.msg1 == known.msg1.strip()
    message = str(error)
    assert "\n" not in message
    assert f"msg_cd={known.msg_cd!r}" in message
    if not error.is_paper_trading_refusal:  # that one has its own, longer advice
        assert message.endswith(known.check)
    assert RIGHT.app_secret not in message


def test_a_refused_token_is_replaced_once(tmp_path: Path) -> None:
    """EGW00121 (invalid) as EGW00123 (expired): the token is discarded and a new one issued."""
    with Simulator(faults="*:token_invalid*1", token_interval=0) as sim:
        client_for(sim, tmp_path).inquire_account_balance(ACCOUNT)
    assert sim.requests["token_issued"] == 2
    assert sim.requests["fault_token_invalid"] == 1


def test_docs_table_has_each_known_answer_with_its_fault() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "kis-errors.md").read_text()
    rows = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if "| `" in line}
    for known in answers.KNOWN_ANSWERS.values():
        row = rows[known.msg_cd]
        assert f":{known.fault}`" in row, row
        assert known.msg1 in row and known.certainty.name.lower() in row, row


def test_the_simulator_refuses_an_unknown_key_and_a_wrong_secret(tmp_path: Path) -> None:
    with Simulator(app_keys={RIGHT.app_key: RIGHT.app_secret}) as sim:
        client_for(sim, tmp_path / "right").inquire_account_balance(ACCOUNT)
        for credentials, code in (
            (Credentials(RIGHT.app_key, "secret-wrong"), "EGW00105"),
            (Credentials("APP-KEY-OTHER", RIGHT.app_secret), "EGW00103"),
        ):
            with pytest.raises(KisApiError) as caught:
                client_for(sim, tmp_path / code, credentials).inquire_account_balance(ACCOUNT)
            assert caught.value.msg_cd == code
            assert caught.value.http_status == 403
    assert sim.requests["token_issued"] == 1


# -- one key, two accounts: real runs of `make run` ------------------------------------------
TWO_ACCOUNTS = "11111111-01,11111111-21"
#: The request deadline of the silent-server run: long enough that waiting it once per account
#: (or retrying it) shows, short enough for a test.
DEADLINE = 6.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    guard = threading.Timer(120.0, sock.close)  # a client with no deadline fails, not hangs
    guard.start()
    try:
        yield sock.getsockname()[1]
    finally:
        guard.cancel()
        sock.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_real(tmp_path: Path, base_url: str, **extra: str) -> Ran:
    """`make run` (the run command, with Dagster's log on the terminal for the run's start and
    end) in real mode against `base_url`, with one app key for two accounts and no cached
    token."""
    env = {
        **os.environ,
        "KIS_ENV": "real",
        "KIS_BASE_URL": base_url,
        "KIS_APP_KEY": RIGHT.app_key,
        "KIS_APP_SECRET": RIGHT.app_secret,
        "KIS_ACCOUNTS": TWO_ACCOUNTS,
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        **extra,
    }
    command = [sys.executable, "-m", "pipelines.commands.run", "--verbose"]
    return run_command(command, env, timeout=240)


def failure_lines(ran: Ran) -> list[str]:
    return [line for line in ran.output.splitlines() if line.startswith("FAILED")]


def run_seconds(ran: Ran) -> float:
    assert ran.run_started is not None and ran.run_ended is not None, ran.output[-3000:]
    return ran.run_ended - ran.run_started


def assert_one_line_for_the_key(ran: Ran, *expected: str) -> None:
    assert ran.returncode == 1, ran.output[-3000:]
    [line] = failure_lines(ran)
    assert "app key …IGHT (accounts 11111111-01, 11111111-21)" in line, line
    for text in expected:
        assert text in line, line
    assert "landed 0 account(s), withheld 0, failed 2" in ran.output
    assert "simulated:" not in ran.output  # a real run
    assert RIGHT.app_secret not in ran.output


def test_a_wrong_secret_fails_the_keys_accounts_at_once_naming_the_setting(
    tmp_path: Path,
) -> None:
    with Simulator(app_keys={RIGHT.app_key: "the-secret-kis-issued"}) as sim:
        ran = run_real(tmp_path, sim.base_url)
    assert_one_line_for_the_key(ran, "msg_cd='EGW00105'", "check KIS_APP_SECRET")
    assert run_seconds(ran) < 10
    assert sim.requests["token_refused EGW00105"] == 1  # asked once for the key, not per account
    assert sim.requests["balance"] == 0


def test_a_closed_port_fails_the_keys_accounts_within_seconds(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    ran = run_real(tmp_path, base_url)
    assert_one_line_for_the_key(ran, f"could not reach {base_url}", "check KIS_BASE_URL")
    assert run_seconds(ran) < 10


def test_a_silent_server_costs_one_deadline_per_key_not_one_per_account(
    tmp_path: Path, silent_port: int
) -> None:
    ran = run_real(
        tmp_path, f"http://127.0.0.1:{silent_port}", KIS_REQUEST_DEADLINE=f"{DEADLINE:g}"
    )
    assert_one_line_for_the_key(ran, "no complete answer within the 6 s deadline")
    took = run_seconds(ran)
    # the token request waits its deadline once; two accounts (or a retry) would be 2 deadlines
    assert DEADLINE <= took < 1.5 * DEADLINE, took


# -- the run's last word counts what landed truthfully ---------------------------------------
@pytest.mark.parametrize(
    ("faults", "shown"),
    [
        ("*:extra_row", "no account is in the views or the report for it"),
        ("12345678-21:extra_row", "in the views and the report: 12345678-01"),
    ],
)
def test_the_final_failure_names_what_is_in_the_views(
    monkeypatch: pytest.MonkeyPatch, faults: str, shown: str
) -> None:
    monkeypatch.setenv("KIS_SIM_FAULTS", faults)  # a row count no layout has: withheld
    description, _ = failure(materialize(today_in_seoul()))
    first = description.splitlines()[0]
    assert first.endswith(f"; {shown}:"), first


def test_a_server_gone_silent_with_a_cached_token_costs_one_deadline_per_key(
    tmp_path: Path, silent_port: int
) -> None:
    """The token is cached, so the first balance request is the first to meet the silence: it
    fails the key's accounts after one deadline, the second account is not tried."""
    deadline = 2.0
    base_url = f"http://127.0.0.1:{silent_port}"
    settings = Settings.from_env(
        {
            "KIS_ENV": "real",
            "KIS_BASE_URL": base_url,
            "KIS_APP_KEY": RIGHT.app_key,
            "KIS_APP_SECRET": RIGHT.app_secret,
            "KIS_ACCOUNTS": TWO_ACCOUNTS,
            "KIS_DATA_ROOT": str(tmp_path / "data"),
            "KIS_REQUEST_DEADLINE": f"{deadline:g}",
        },
        env_file=tmp_path / "none.env",
    )
    tokens = TokenCache(tmp_path / "tokens")
    expires = datetime.now(UTC) + timedelta(hours=12)
    tokens.save(base_url, RIGHT.app_key, Token("cached-token-0123456789", expires))
    started = time.monotonic()
    report = fetch_and_land(
        settings, RawLanding(settings.data_root), today_in_seoul(), token_cache=tokens
    )
    took = time.monotonic() - started
    assert deadline <= took < 1.5 * deadline, took
    first, second = report.failures.values()
    assert first is second and not report.landed
    assert str(first).startswith("app key …IGHT (accounts 11111111-01, 11111111-21): ")
    assert "cached-token-0123456789" not in str(first)


@pytest.mark.parametrize("pair", ["KEY-ONLY", "=secret", "KEY="])
def test_the_simulator_cli_wants_app_key_equals_secret(
    pair: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        simulator_main(["--port", "0", "--app-key", pair])
    assert exited.value.code == 2
    assert "--app-key takes APP_KEY=APP_SECRET" in capsys.readouterr().err
