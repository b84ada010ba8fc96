"""Answers that are not a success are kept in quarantine (raw/quarantine/CTRP6548R/...) with
their status, allow-listed headers and body, never read as answers, free of secrets, and
kis-redact makes a bug report of them. Served by loopback servers written for the tests."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from pipelines.commands.redact import fake_cano
from pipelines.ingest import capture
from pipelines.ingest.fetch import LandingReport, fetch_and_land, today_in_seoul
from pipelines.ingest.landing import QUARANTINE_FORMAT, SECRET_REMOVED, RawLanding
from pipelines.kis import protocol, transport
from pipelines.kis.protocol import Account
from pipelines.kis.tokens import TokenCache
from pipelines.settings import Settings
from pipelines.simulator.portfolio import balance_body
from pipelines.storage.roots import open_root
from tests import served
from tests.served import body_of, every_file
from tests.wire_servers import (
    TOKEN,
    Connection,
    Recorder,
    Request,
    ScriptedServer,
    account_of,
    balance_answer,
    head,
    json_bytes,
    kis_like,
)

APP_KEY = "PSquarantineAppKey00000000000000000"
APP_SECRET = "quarantine-APP-SECRET-" + "Qw8" * 12
BAD, GOOD = Account("11111111", "01"), Account("22222222", "01")
DAY = date(2026, 3, 16)
LIMIT = 16384
#: Headers every bad answer comes with: only the allow-listed ones may be kept.
NOISE = {"set-cookie": f"session={APP_KEY}", "x-echo-appsecret": APP_SECRET, "server": "gw/1.0"}


def html_page(status: int) -> bytes:
    return (
        f"<html><head><title>{status} Bad Gateway</title></head>"
        f"<body>계좌 {BAD.id} 조회 실패</body></html>"
    ).encode()


def good(account: Account) -> bytes:
    return json_bytes(balance_body(account, DAY))


def mangled_gzip() -> bytes:
    packed = bytearray(gzip.compress(good(BAD)))
    packed[40:60] = b"\x00" * 20
    return bytes(packed)


def not_utf8() -> bytes:
    body = good(BAD).replace(b'"output1"', b'"output1\xff\xfe"')
    return body + f" {BAD.cano}".encode()


#: kind: (status, headers, body as sent, how many bytes of it are kept)
KINDS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "html_on_200": (200, {"content-type": "text/html"}, html_page(200)),
    "gateway_502": (502, {"content-type": "text/html"}, html_page(502)),
    "truncated_json": (200, {"content-type": "application/json"}, good(BAD)[:700]),
    "not_utf8": (200, {"content-type": "application/json"}, not_utf8()),
    "gzip_mangled": (200, {"content-encoding": "gzip"}, mangled_gzip()),
    "error_body": (
        200,
        {"content-type": "application/json", "tr_id": "CTRP6548R"},
        json_bytes(
            {
                "rt_cd": "1",
                "msg_cd": "OPSQ2000",
                "msg1": "ERROR : INPUT INVALID_CHECK_ACNO                ",
            }
        ),
    ),
    "redirect": (302, {"location": "http://127.0.0.1:9/steal?token=x"}, b"<p>moved</p>"),
    "oversized": (200, {"content-type": "application/json"}, b'{"output1":[' + b" " * 40_000),
    "echoes_secrets": (
        400,
        {"content-type": "text/plain"},
        f"you sent appkey={APP_KEY} appsecret={APP_SECRET} token={TOKEN}".encode(),
    ),
}
#: What the failure says, per kind.
REASONS = {
    "html_on_200": "HTTP 200 with a body that is not JSON",
    "gateway_502": "HTTP 502 with a body that is not JSON",
    "truncated_json": "HTTP 200 with a body that is not JSON",
    "not_utf8": "HTTP 200 with a body that is not UTF-8 text",
    "gzip_mangled": "HTTP 200 with a body that is not valid gzip",
    "error_body": "msg_cd='OPSQ2000'",
    "redirect": "HTTP 302 redirect to 127.0.0.1:9 refused",
    "oversized": f"over the {LIMIT:,}-byte limit",
    "echoes_secrets": "HTTP 400 with a body that is not JSON",
}


def serving(kind: str) -> Callable[[Request, Connection], bool]:
    status, headers, body = KINDS[kind]

    def balance(request: Request, connection: Connection) -> bool:
        account = Account.parse(account_of(request))
        if account == GOOD:
            return balance_answer(connection, good(GOOD))
        return connection.send(head(status, body, {**NOISE, **headers}) + body)

    return balance


def settings_for(server_url: str, tmp_path: Path, data_root: str | None = None) -> Settings:
    environ = {
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        "XDG_DATA_HOME": str(tmp_path / "share"),
        "KIS_ENV": "real",
        "KIS_BASE_URL": server_url,
        "KIS_APP_KEY": APP_KEY,
        "KIS_APP_SECRET": APP_SECRET,
        "KIS_ACCOUNTS": f"{BAD.id},{GOOD.id}",
        "KIS_DATA_ROOT": data_root or str(tmp_path / "data"),
        "KIS_RATE_LIMIT": "1000",
        "KIS_REQUEST_DEADLINE": "1",
        "KIS_ACCOUNT_BUDGET": "1.5",  # the gateway's 502 is retried until then
        "KIS_MAX_BODY_BYTES": str(LIMIT),
        "KIS_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
    }
    return Settings.from_env(environ, env_file=tmp_path / "none.env")


def run(
    kind: str, tmp_path: Path, data_root: str | None = None
) -> tuple[RawLanding, LandingReport]:
    with ScriptedServer(kis_like(serving(kind))) as server:
        settings = settings_for(server.base_url, tmp_path, data_root)
        landing = RawLanding(settings.data_root)
        report = fetch_and_land(settings, landing, DAY, token_cache=TokenCache(tmp_path / "tok"))
    return landing, report


def assert_no_secret_anywhere(files: dict[str, bytes]) -> None:
    served.assert_no_secret_anywhere(
        files, {"app key": APP_KEY, "app secret": APP_SECRET, "token": TOKEN}
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_bad_answer_lands_one_quarantine_file(kind: str, tmp_path: Path) -> None:
    landing, report = run(kind, tmp_path)
    status, headers, sent = KINDS[kind]
    assert list(report.failures) == [BAD.id]
    failure = str(report.failures[BAD.id])
    assert REASONS[kind] in failure and "\n" not in failure
    quarantined = landing.quarantined(DAY)
    assert [str(where) for where in quarantined] == [str(report.quarantined[BAD.id])]
    where = quarantined[0]
    assert str(where.parent) == str(landing.quarantine_dir(DAY) / BAD.id)
    envelope = json.loads(where.read_bytes())
    assert envelope["format"] == QUARANTINE_FORMAT
    assert envelope["account_id"] == BAD.id and envelope["snapshot_date"] == DAY.isoformat()
    assert envelope["request"]["params"]["CANO"] == BAD.cano
    answer = envelope["answer"]
    assert answer["status"] == status
    assert set(answer["headers"]) <= transport.KEPT_HEADERS
    assert answer["headers"]["server"] == "gw/1.0"  # allow-listed, kept
    for name, value in headers.items():
        expected = "127.0.0.1:9" if name == "location" else value
        assert answer["headers"][name] == expected
    kept = body_of(envelope)
    if kind == "oversized":
        assert kept == sent[:LIMIT] and answer["complete"] is False
    elif kind == "echoes_secrets":
        assert kept.count(SECRET_REMOVED.encode()) == 3 and envelope["secrets_removed"] == 3
        assert kept.startswith(b"you sent appkey=")
        assert all(secret not in failure for secret in (APP_KEY, APP_SECRET, TOKEN))
    else:
        assert kept == sent and answer["body_bytes"] == len(sent)
    expected_encoding = "base64" if kind in ("not_utf8", "gzip_mangled") else "utf-8"
    assert answer["body_encoding"] == expected_encoding
    assert envelope["reason"].replace(SECRET_REMOVED, "") == failure.replace(SECRET_REMOVED, "")
    # the good account of the same day is landed and is the day's only answer
    assert [p.parent.name for p in report.landed] == [GOOD.id]
    assert list(landing.answers_by_account(DAY)) == [GOOD.id]
    assert capture.landed_accounts(landing, DAY) == {GOOD.id}
    assert_no_secret_anywhere(every_file(landing.storage))


def test_a_stalled_answer_keeps_what_arrived(tmp_path: Path) -> None:
    def trickle(request: Request, connection: Connection) -> bool:
        if Account.parse(account_of(request)) == GOOD:
            return balance_answer(connection, good(GOOD))
        body = good(BAD)
        connection.send(head(200, body, {"content-type": "application/json"}))
        connection.trickle(body, 0.2)
        return False

    with ScriptedServer(kis_like(trickle)) as server:
        settings = settings_for(server.base_url, tmp_path)
        landing = RawLanding(settings.data_root)
        report = fetch_and_land(settings, landing, DAY, token_cache=TokenCache(tmp_path / "tok"))
    (where,) = landing.quarantined(DAY)
    envelope = json.loads(where.read_bytes())
    assert envelope["error"] == "KisBudgetError"
    assert envelope["answer"]["complete"] is False
    assert good(BAD).startswith(body_of(envelope)) and body_of(envelope)
    assert [p.parent.name for p in report.landed] == [GOOD.id]


def test_quarantine_is_never_read_as_an_answer(tmp_path: Path) -> None:
    """Only quarantined answers on a day: the day has no answer, and no first landed day."""
    with ScriptedServer(kis_like(serving("truncated_json"))) as server:
        settings = settings_for(server.base_url, tmp_path)
        settings = Settings(**{**settings.__dict__, "accounts": (BAD,)})
        landing = RawLanding(settings.data_root)
        fetch_and_land(settings, landing, DAY, token_cache=TokenCache(tmp_path / "tok"))
    assert len(landing.quarantined(DAY)) == 1
    assert landing.latest_files(DAY) == [] and landing.all_files(DAY) == []
    assert landing.answers_by_account(DAY) == {}
    assert capture.landed_accounts(landing, DAY) == set()
    assert capture.first_landed_day(landing) is None
    assert landing.children() == []  # raw/CTRP6548R/ itself holds nothing


def test_quarantine_goes_through_the_storage_seam_to_s3(s3_root: str, tmp_path: Path) -> None:
    landing, report = run("gzip_mangled", tmp_path, data_root=s3_root)
    (where,) = landing.quarantined(DAY)
    assert str(where).startswith(f"{s3_root}/raw/quarantine/CTRP6548R/snapshot_date={DAY}/")
    envelope = json.loads(where.read_bytes())
    assert body_of(envelope) == KINDS["gzip_mangled"][2]
    assert "is not valid gzip" in envelope["answer"]["decoding_error"]
    assert [p.parent.name for p in report.landed] == [GOOD.id]
    assert_no_secret_anywhere(every_file(RawLanding(open_root(landing.storage.root)).storage))


def test_a_redirect_answer_never_reaches_the_other_host(tmp_path: Path) -> None:
    with Recorder() as elsewhere:

        def balance(request: Request, connection: Connection) -> bool:
            if Account.parse(account_of(request)) == GOOD:
                return balance_answer(connection, good(GOOD))
            location = f"{elsewhere.base_url}/x?appsecret=leak"
            return connection.answer(302, b"", {"location": location})

        with ScriptedServer(kis_like(balance)) as server:
            settings = settings_for(server.base_url, tmp_path)
            landing = RawLanding(settings.data_root)
            fetch_and_land(settings, landing, DAY, token_cache=TokenCache(tmp_path / "tok"))
    assert elsewhere.connections == 0
    (where,) = landing.quarantined(DAY)
    headers = json.loads(where.read_bytes())["answer"]["headers"]
    assert headers["location"] == f"127.0.0.1:{elsewhere.port}"  # no path, no query


# -- kis-redact ----------------------------------------------------------------------------
def redact(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("kis-redact")
    return subprocess.run(
        [str(command), str(path), "--salt", "s", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize("kind", ["html_on_200", "not_utf8", "error_body", "oversized"])
def test_kis_redact_makes_a_bug_report_of_a_quarantined_answer(kind: str, tmp_path: Path) -> None:
    landing, _ = run(kind, tmp_path)
    (where,) = landing.quarantined(DAY)
    out = tmp_path / "report.json"
    done = redact(Path(str(where)), "-o", str(out), env={"KIS_APP_SECRET": APP_SECRET})
    assert done.returncode == 0, done.stderr
    fake = fake_cano(BAD.cano, b"s")
    assert f"account masked as {fake}-01" in done.stderr
    copy = json.loads(out.read_text())
    assert copy["format"] == QUARANTINE_FORMAT and copy["account_id"] == f"{fake}-01"
    assert BAD.cano not in out.read_text() and BAD.cano.encode() not in body_of(copy)
    assert copy["answer"]["status"] == KINDS[kind][0]
    assert copy["reason"].startswith(f"account {fake}-01: ")
    original = json.loads(where.read_bytes())
    assert len(body_of(copy)) == len(body_of(original))  # the same body, digits masked
    if kind == "html_on_200":
        assert f"계좌 {fake}-01 조회 실패".encode() in body_of(copy)
    assert copy["source"]["server"] == original["source"]["server"]  # loopback: kept


def test_kis_redact_replaces_amounts_only_in_a_json_body(tmp_path: Path) -> None:
    landing, _ = run("html_on_200", tmp_path)
    (where,) = landing.quarantined(DAY)
    refused = redact(Path(str(where)), "--amounts")
    assert refused.returncode == 1 and not refused.stdout
    assert "--amounts: the body is not a JSON object" in refused.stderr

    landing, _ = run("error_body", tmp_path / "json")
    (where,) = landing.quarantined(DAY)
    done = redact(Path(str(where)), "--amounts", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert json.loads(body_of(json.loads(done.stdout)))["msg_cd"] == "OPSQ2000"


def test_kis_redact_refuses_a_quarantined_file_holding_a_secret(tmp_path: Path) -> None:
    landing, _ = run("html_on_200", tmp_path)
    (where,) = landing.quarantined(DAY)
    envelope = json.loads(where.read_bytes())
    envelope["answer"]["body"] += f" {APP_SECRET}"  # as if written by something else
    doctored = tmp_path / "doctored.json"
    doctored.write_text(json.dumps(envelope))
    refused = redact(doctored, env={"KIS_APP_SECRET": APP_SECRET})
    assert refused.returncode == 1 and "Not writing a copy" in refused.stderr
    envelope["answer"]["body"] = base64.b64encode(f"x {APP_SECRET}".encode()).decode()
    envelope["answer"]["body_encoding"] = "base64"
    doctored.write_text(json.dumps(envelope))
    refused = redact(doctored, env={"KIS_APP_SECRET": APP_SECRET})
    assert refused.returncode == 1 and "Not writing a copy" in refused.stderr


def test_a_good_day_lands_nothing_in_quarantine(tmp_path: Path) -> None:
    def balance(request: Request, connection: Connection) -> bool:
        return balance_answer(connection, good(Account.parse(account_of(request))))

    with ScriptedServer(kis_like(balance)) as server:
        settings = settings_for(server.base_url, tmp_path)
        landing = RawLanding(settings.data_root)
        report = fetch_and_land(
            settings, landing, today_in_seoul(), token_cache=TokenCache(tmp_path / "tok")
        )
    assert not report.failures and not report.quarantined
    assert not landing.storage.files("raw/quarantine")
    assert protocol.BALANCE_TR_ID in landing.storage.children("raw")
