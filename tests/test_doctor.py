"""`make doctor`: one screen of the settings, the data root's kind, today's capture and the
token cache; with --online one balance request per app key on a cached token only. In simulator
mode and in real mode against the simulator on loopback; never a secret on the screen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.commands import doctor
from pipelines.ingest.fetch import today_in_seoul
from pipelines.kis.tokens import TokenCache
from pipelines.simulator.faults import FaultPlan
from pipelines.simulator.server import Simulator
from tests.runs import failure_text, materialize

APP_KEY = "FAKE-REAL-APP-KEY-0123456789abcdefWXYZ"
APP_SECRET = "FAKE-REAL-SECRET-never-on-screen-0123456789"


def screen(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str], str]:
    """doctor's exit status, its lines by label, and all it printed."""
    status = doctor.main(list(args))
    out, err = capsys.readouterr()
    lines = {}
    for line in out.splitlines():
        label, _, text = line.partition(":")
        lines.setdefault(label.strip(), text.strip())
    return status, lines, out + err


@pytest.fixture
def real_mode(monkeypatch: pytest.MonkeyPatch, simulator: Simulator) -> Simulator:
    monkeypatch.setenv("KIS_ENV", "real")
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KIS_APP_KEY", APP_KEY)
    monkeypatch.setenv("KIS_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("KIS_ACCOUNTS", "55555555-01,55555555-21")
    return simulator


def test_simulator_mode(isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines, _ = screen(capsys)
    assert status == 0
    assert lines["Mode"].startswith("sim:") and lines["Server"].startswith("embedded")
    assert lines["App key 1"].endswith(": 12345678-01, 12345678-21")
    assert lines["token"] == "none cached"
    assert lines["Data root"] == str(isolated_env) and lines["kind"] == "empty"
    assert lines["landed"] == "0 of 2 accounts; missing 12345678-01, 12345678-21"
    assert "a capture day" in lines["Today"]  # every day is one in the tests

    assert materialize(today_in_seoul()).success
    status, lines, _ = screen(capsys, "--online")
    assert status == 0
    assert lines["kind"] == "simulated (raw/provenance.json)"
    assert lines["landed"] == "2 of 2 accounts"
    assert lines["token"].startswith("cached, expires at ")
    assert lines["online"].startswith("12345678-01 answered (1 page(s)); total assets ")


def test_real_mode_online_uses_a_cached_token_only_and_shows_no_secret(
    isolated_env: Path, real_mode: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines, out = screen(capsys, "--online")
    assert status == 1
    assert lines["Mode"].startswith("real:") and lines["Server"] == real_mode.base_url
    assert lines["App key 1"] == "…WXYZ (38 characters): 55555555-01, 55555555-21"
    assert lines["token"] == "none cached"
    assert lines["online"].startswith("not asked: no cached token")
    assert "--issue-token" in lines["online"]
    assert real_mode.requests["token_issued"] == real_mode.requests["balance"] == 0

    result = materialize(today_in_seoul())  # a run issues the key's token, and caches it
    assert result.success, failure_text(result)
    issued = real_mode.requests["token_issued"]
    status, lines, out = screen(capsys, "--online")
    assert status == 0, out
    assert lines["token"].startswith("cached, expires at ")
    assert lines["online"].startswith("55555555-01 answered")
    assert lines["kind"] == "real (raw/provenance.json)"
    assert lines["landed"] == "2 of 2 accounts"
    assert real_mode.requests["token_issued"] == issued  # the cached one, no new token

    [cached] = (Path(TokenCache().directory)).glob("*.json")
    token = json.loads(cached.read_text())["access_token"]
    for secret in (APP_KEY, APP_SECRET, token):
        assert secret not in out

    # a token the server calls expired is not replaced: no new one without asking
    real_mode.faults = FaultPlan.parse("55555555-01:expired_token")
    status, lines, out = screen(capsys, "--online")
    assert status == 1
    assert lines["online"].startswith("FAILED: ") and "EGW00123" in lines["online"]
    assert real_mode.requests["token_issued"] == issued
    assert json.loads(cached.read_text())["access_token"] == token  # kept, not discarded


def test_issue_token_asks_for_one_only_when_told(
    isolated_env: Path, real_mode: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines, out = screen(capsys, "--online", "--issue-token")
    assert status == 0, out
    assert real_mode.requests["token_issued"] == 1
    assert lines["online"].startswith("55555555-01 answered")
    assert APP_SECRET not in out


def test_a_root_of_the_other_kind_is_named_with_what_to_do(
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    real_mode: Simulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KIS_ENV", "sim")
    assert materialize(today_in_seoul()).success
    monkeypatch.setenv("KIS_ENV", "real")
    status, lines, _ = screen(capsys)
    assert status == 1
    assert lines["kind"] == "simulated (raw/provenance.json)"
    assert "set KIS_DATA_ROOT to another folder" in lines["REFUSED"]


def test_settings_that_cannot_be_read_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIS_ENV", "reall")
    status, _, out = screen(capsys)
    assert status == 2
    assert out == "Settings: KIS_ENV='reall': expected one of sim, real\n"
