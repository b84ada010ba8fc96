"""Notifications without Dagster: the settings, the message builders (masked accounts, no
secret), the ledger (once per cause and day), the window's moments, and sending to real
receivers on loopback (Apprise's json:// and mailto://, the healthcheck GET)."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.ingest.capture import CaptureSettings, parse_window
from pipelines.kis.client import KisGatewayError
from pipelines.kis.protocol import KisApiError, KisBudgetError
from pipelines.kis.tokens import SEOUL
from pipelines.notify import config, messages, sender, window
from pipelines.notify.ledger import KEEP_DAYS, Ledger
from pipelines.notify.messages import AccountProblem, Redactor
from tests.receivers import http_receiver, smtp_receiver

DAY = date(2026, 12, 7)
ACCOUNT = "12345678-01"
SECRET = "SECRET-APP-SECRET-VALUE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3OCJ9.c2lnbmF0dXJlLXZhbHVl"
REDACT = Redactor((ACCOUNT, "12345678-21"), ("APPKEY-1234", SECRET))


def no_secret(text: str) -> None:
    for secret in ("12345678", SECRET, "APPKEY-1234", JWT):
        assert secret not in text, (secret, text)


# -- settings ----------------------------------------------------------------------------------


def test_unset_means_nothing_to_do() -> None:
    settings = config.parse({})
    assert not settings.sends and not settings.active
    assert settings.closing_minutes == 60 and not settings.digest and not settings.full_accounts


def test_urls_are_split_on_commas_and_blanks_but_not_inside_a_url() -> None:
    settings = config.parse(
        {
            "KIS_NOTIFY": "tgram://123:abc/456, mailto://u:p@example.com?to=a@x.kr,b@y.kr "
            "json://127.0.0.1:8080/hook",
            "KIS_NOTIFY_ACCOUNTS": "full",
            "KIS_NOTIFY_DIGEST": "1",
            "KIS_NOTIFY_CLOSING_MINUTES": "0.5",
            "KIS_HEALTHCHECK_URL": "https://hc-ping.com/uuid",
        }
    )
    assert settings.urls == (
        "tgram://123:abc/456",
        "mailto://u:p@example.com?to=a@x.kr,b@y.kr",
        "json://127.0.0.1:8080/hook",
    )
    assert settings.full_accounts and settings.digest and settings.closing_minutes == 0.5
    assert "abc" not in repr(settings) and "hc-ping" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KIS_NOTIFY", "tgram-token-without-scheme"),
        ("KIS_NOTIFY_ACCOUNTS", "some"),
        ("KIS_NOTIFY_DIGEST", "daily"),
        ("KIS_HEALTHCHECK_URL", "ftp://hc.example/secret-uuid"),
        ("KIS_NOTIFY_CLOSING_MINUTES", "-5"),
        ("KIS_NOTIFY_TICK", "0"),
    ],
)
def test_a_wrong_value_is_named_without_showing_a_url(name: str, value: str) -> None:
    with pytest.raises(config.NotifySettingsError, match=name) as caught:
        config.parse({name: value})
    assert "secret-uuid" not in str(caught.value) and "tgram-token" not in str(caught.value)


# -- messages ----------------------------------------------------------------------------------


def test_accounts_are_masked_and_secrets_scrubbed() -> None:
    assert messages.mask(ACCOUNT) == "****5678-01"
    assert messages.mask(ACCOUNT, full=True) == ACCOUNT
    text = REDACT(
        f"account {ACCOUNT} (CANO 12345678), 87654321-22 key APPKEY-1234 {SECRET} Bearer {JWT}"
        " msg_cd 90000000"
    )
    no_secret(text)
    assert "87654321" not in text
    assert "account ****5678-01 (CANO ****5678), ****4321-22" in text
    assert "msg_cd 90000000" in text  # a code of eight digits is not an account
    assert Redactor((ACCOUNT,), full=True)(ACCOUNT) == ACCOUNT


def kis_error(msg_cd: str, msg1: str) -> KisApiError:
    return KisApiError(
        what=f"account {ACCOUNT}", rt_cd="1", msg_cd=msg_cd, msg1=msg1, http_status=500
    )


def test_what_retrying_can_fix_and_what_it_cannot() -> None:
    assert AccountProblem.from_error(ACCOUNT, kis_error("OPSQ2002", "없는 계좌")).permanent
    assert AccountProblem.from_error(
        ACCOUNT, kis_error("EGW00103", "유효하지 않은 AppKey")
    ).kind == ("token")
    assert not AccountProblem.from_error(ACCOUNT, kis_error("EGW00201", "초당 거래건수")).permanent
    assert not AccountProblem.from_error(ACCOUNT, KisGatewayError("HTTP 502 page")).permanent
    assert not AccountProblem.from_error(ACCOUNT, KisBudgetError("budget spent")).permanent
    assert AccountProblem.from_error(ACCOUNT, OSError("No space left on device")).permanent
    assert AccountProblem.from_metadata(ACCOUNT, {"withheld": "row count 18"}).permanent
    # metadata of runs before the flag: decided by msg_cd
    assert AccountProblem.from_metadata(ACCOUNT, {"msg_cd": "OPSQ2002", "error": "x"}).permanent
    assert not AccountProblem.from_metadata(ACCOUNT, {"msg_cd": "EGW00201"}).permanent
    assert not AccountProblem.from_metadata(ACCOUNT, {"error": "x", "retryable": True}).permanent


def test_a_permanent_failure_names_the_masked_account_the_code_and_what_to_do() -> None:
    error = kis_error("OPSQ2002", f"{ACCOUNT} 조회할 자료가 없습니다")
    message = messages.permanent_failure(DAY, AccountProblem.from_error(ACCOUNT, error), REDACT)
    text = message.title + message.body
    assert "****5678-01" in text and "OPSQ2002" in text and "조회할 자료가 없습니다" in text
    assert "What to do: Check the account number" in message.body
    assert message.cause == f"permanent:{ACCOUNT}:OPSQ2002" and message.day == DAY
    no_secret(text)
    withheld = messages.permanent_failure(
        DAY, AccountProblem.from_metadata(ACCOUNT, {"withheld": "18 rows: no layout"}), REDACT
    )
    assert "withheld" in withheld.title and "make verify" in withheld.body
    assert withheld.cause != message.cause


def test_a_run_failure_tells_its_first_line_only() -> None:
    message = messages.run_failure(
        DAY, "balance_tables", f"damaged file for {ACCOUNT} key {SECRET}\ntraceback…", REDACT
    )
    assert "balance_tables" in message.body and "traceback" not in message.body
    no_secret(message.body)


def test_the_window_message_lists_each_missing_account_with_its_attempts() -> None:
    attempts = [
        (1, [ACCOUNT, "12345678-21"], {ACCOUNT: "HTTP 502", "12345678-21": "OPSQ2002 first"}),
        (2, ["12345678-21"], {"12345678-21": f"OPSQ2002 {SECRET}"}),
    ]
    missing = messages.missing_accounts(["12345678-21", "99999999-01"], attempts)
    assert missing[0] == messages.MissingAccount("12345678-21", (1, 2), f"OPSQ2002 {SECRET}")
    assert missing[1] == messages.MissingAccount("99999999-01")
    closes = datetime(2026, 12, 7, 23, 30, tzinfo=SEOUL)
    closing = messages.window_closing(DAY, closes, missing, REDACT, closed=False)
    assert "closes at 23:30" in closing.body
    assert "- ****5678-21: attempts 1, 2; last error: OPSQ2002 [secret]" in closing.body
    assert "- ****9999-01: no attempt yet" in closing.body
    closed = messages.window_closing(
        DAY, closes, missing, REDACT, closed=True, next_window=closes + timedelta(hours=19)
    )
    assert closed.cause != closing.cause and "missed_captures" in closed.body
    no_secret(closing.body + closed.body)


def test_the_digest_in_whole_won_per_account_and_together() -> None:
    summary = messages.Digest(
        day=DAY,
        accounts=[(ACCOUNT, Decimal("1000000.4"), Decimal("-2500")), ("12345678-21", None, None)],
        net_assets=Decimal("1000000.6"),
        net_assets_change=Decimal("12345.5"),
        change_note=None,
        moves=[("equity", Decimal("61.2"), Decimal("1.5"))],
        missed=[(date(2026, 12, 2), "12345678-21")],
        report="/data/reports/portfolio-2026-12-07.html",
    )
    message = messages.digest(summary, REDACT)
    assert message.title == "KIS balance 2026-12-07: ₩1,000,001"
    assert "₩+12,346" in message.body  # half-even: 12345.5 → 12346
    assert "- ****5678-01: ₩1,000,000 (₩-2,500)" in message.body
    assert "- ****5678-21: n/a" in message.body
    assert "- equity: 61.2% (+1.5 pp)" in message.body
    assert "Missed this month (1): 12-02 ****5678-21" in message.body
    assert "portfolio-2026-12-07.html" in message.body
    no_secret(message.body)


# -- the ledger --------------------------------------------------------------------------------


def test_the_ledger_tells_a_cause_once_a_day(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.json"
    assert Ledger(path).claim(DAY, "window-closing")
    assert not Ledger(path).claim(DAY, "window-closing")  # a new process reads the file
    assert Ledger(path).claim(DAY, "window-closed")
    assert Ledger(path).claim(DAY + timedelta(days=1), "window-closing")
    assert set(Ledger(path).told(DAY)) == {"window-closing", "window-closed"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # old days are dropped when the file is written
    Ledger(path).claim(DAY + timedelta(days=KEEP_DAYS + 1), "digest")
    assert Ledger(path).told(DAY) == {}


def test_the_ledger_gives_a_cause_to_one_claimer_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(Ledger(path).claim(DAY, "digest")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_a_damaged_ledger_is_started_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    assert Ledger(path).claim(DAY, "digest")
    assert not Ledger(path).claim(DAY, "digest")


# -- when the window's messages are due --------------------------------------------------------


def test_the_window_is_told_before_its_end_and_once_closed() -> None:
    settings = CaptureSettings(window=parse_window("18:30-23:30"))  # mon-fri
    monday = datetime(2026, 12, 7, tzinfo=SEOUL)
    assert window.due(settings, monday.replace(hour=22, minute=29), 60) is None
    closing = window.due(settings, monday.replace(hour=22, minute=31), 60)
    assert closing == window.WindowMoment(DAY, monday.replace(hour=23, minute=30), closed=False)
    closed = window.due(settings, monday.replace(hour=23, minute=45), 60)
    assert closed is not None and closed.closed and closed.day == DAY
    assert window.due(settings, monday.replace(hour=23, minute=1), 0) is None  # only at close
    # Saturday morning: Friday's close was more than 12 hours ago
    assert window.due(settings, monday + timedelta(days=5, hours=12), 60) is None
    # a run in flight is waited for, but never past the close nor long after it
    assert window.wait_for_run(closing, monday.replace(hour=23, minute=29), 20)
    assert not window.wait_for_run(closing, monday.replace(hour=23, minute=29, second=30), 20)
    assert window.wait_for_run(closed, monday.replace(hour=23, minute=39), 20)
    assert not window.wait_for_run(closed, monday.replace(hour=23, minute=40), 20)
    friday_night = monday + timedelta(days=4, hours=23, minutes=40)
    moment = window.due(settings, friday_night, 60)
    assert moment is not None and moment.day == date(2026, 12, 11) and moment.closed


# -- sending, to real receivers ----------------------------------------------------------------


def test_a_message_reaches_a_webhook_and_a_mailbox() -> None:
    message = messages.permanent_failure(
        DAY, AccountProblem.from_error(ACCOUNT, kis_error("OPSQ2002", "없는 계좌")), REDACT
    )
    with http_receiver() as (http, hooks), smtp_receiver() as (mailto, mails):
        json_url = http.replace("http://", "json://") + "/hook"
        outcome = sender.send([json_url, mailto], message, REDACT)
        assert outcome.ok, outcome.detail
        [hook], [mail] = hooks.messages(), mails.messages()
    assert hook.path == "/hook" and hook.title == message.title and hook.body == message.body
    assert mail.path == "me@localhost" and mail.title == message.title
    assert mail.body.replace("\r\n", "\n").strip() == message.body


def test_a_failing_notifier_is_reported_not_raised_and_its_url_not_shown() -> None:
    message = messages.Message(DAY, "x", "title", "body")
    with http_receiver() as (http, hooks):
        port = http.rsplit(":", 1)[1]
    # the receiver is gone: nothing listens on its port any more
    outcome = sender.send(
        [f"json://user:hunter2-password@127.0.0.1:{port}/hook", "nosuchscheme://token"],
        message,
        Redactor(),
    )
    assert not outcome.ok
    assert "KIS_NOTIFY entry 2 (nosuchscheme://…)" in outcome.detail
    assert "hunter2-password" not in outcome.detail and "token" not in outcome.detail
    assert hooks.messages() == []


def test_the_healthcheck_ping_is_a_get() -> None:
    with http_receiver() as (http, inbox):
        assert sender.ping(f"{http}/ping/5f1c") == sender.Outcome(True)
        [ping] = inbox.get_pings()
        assert ping.path == "/ping/5f1c"
    assert not sender.ping(f"{http}/ping/5f1c").ok  # gone: reported, not raised


# -- which sensors exist -----------------------------------------------------------------------


def test_unset_the_definitions_are_as_before_and_set_they_gain_the_sensors() -> None:
    from assets import notifications
    from pipelines.definitions import defs

    assert not notifications.NOTIFY.active  # tests/conftest.py: no KIS_NOTIFY
    assert notifications.sensors() == []
    assert [s.name for s in defs.sensors or []] == ["balance_capture"]
    hook = config.parse({"KIS_HEALTHCHECK_URL": "https://hc-ping.com/x"})
    assert [s.name for s in notifications.sensors(hook)] == ["kis_notify_day_complete"]
    everything = config.parse({"KIS_NOTIFY": "json://127.0.0.1:9/hook"})
    assert {s.name for s in notifications.sensors(everything)} == {
        "kis_notify_failures",
        "kis_notify_window",
        "kis_notify_day_complete",
    }


def test_a_full_disk_is_for_a_person() -> None:
    from pipelines.ingest.fetch import LandingError

    error = LandingError(
        f"account {ACCOUNT}: could not land its answer at /data/raw/x.json: [Errno 28] No space "
        "left on device; the answer is kept at /state/x.json and landed by the next run"
    )
    problem = AccountProblem.from_error(ACCOUNT, error)
    assert problem.permanent and problem.kind == "landing"
    message = messages.permanent_failure(DAY, problem, REDACT)
    assert "No space left on device" in message.body and "free space" in message.body


# -- the failure sensor, evaluated on a real failed run ----------------------------------------


def test_the_failure_sensor_tells_what_retrying_cannot_fix_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from assets import notifications
    from assets.resources import KisResource
    from pipelines.ingest.fetch import today_in_seoul
    from tests.runs import materialize

    # KIS refuses one account; the other meets only "too many requests" until its budget ends
    monkeypatch.setenv("KIS_SIM_FAULTS", "12345678-21:business_error,12345678-01:rate_limit")
    monkeypatch.setenv("KIS_REQUEST_DEADLINE", "1")
    monkeypatch.setenv("KIS_ACCOUNT_BUDGET", "1")
    home = tmp_path / "dagster_home"
    home.mkdir()
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        http_receiver() as (http, hooks),
    ):
        result = materialize(today_in_seoul(), instance)
        assert not result.success
        problems, run_errors = notifications.run_problems(instance, result.run_id)
        assert not problems["12345678-01"].permanent and problems["12345678-21"].permanent
        assert run_errors == []
        run = instance.get_run_by_id(result.run_id)
        [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert run is not None and failure.dagster_event is not None
        monkeypatch.setattr(
            notifications,
            "NOTIFY",
            config.parse({"KIS_NOTIFY": http.replace("http://", "json://") + "/hook"}),
        )
        for _ in range(2):  # the same run seen twice (or a later one saying the same): once
            context = dg.build_run_status_sensor_context(
                sensor_name="kis_notify_failures",
                dagster_event=failure.dagster_event,
                dagster_instance=instance,
                dagster_run=run,
                resources={"kis": KisResource()},
            ).for_run_failure()
            notifications.notify_failures(context)
        [told] = hooks.messages()
    assert "****5678-21" in told.title and "OPSQ2002" in told.body
    assert "5678-01" not in told.body  # retryable: told only if the window closes without it
    assert set(notifications.ledger(instance).told(today_in_seoul())) == {
        "permanent:12345678-21:OPSQ2002"
    }


def test_the_documented_examples_are_urls_apprise_takes() -> None:
    import re

    import apprise

    docs = Path(__file__).resolve().parent.parent / "docs" / "notifications.md"
    blocks = re.findall(r"```\n(.*?)```", docs.read_text(encoding="utf-8"), flags=re.DOTALL)
    lines = [
        line.strip().partition("=")[2]
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("KIS_NOTIFY=")
    ]
    assert len(lines) >= 3  # Telegram, Gmail, an SMTP server of one's own
    for text in lines:
        for url in config.parse({"KIS_NOTIFY": text}).urls:
            assert apprise.Apprise().add(url), url


def test_the_digest_reads_two_days_of_real_views(isolated_env: Path) -> None:
    import duckdb

    from pipelines.notify.digest import read_digest
    from pipelines.settings import Settings
    from tests.runs import materialize

    first, second = date(2024, 5, 2), date(2024, 5, 3)
    assert materialize([first, second]).success
    settings = Settings.from_env()
    summary = read_digest(settings.data_root, settings.warehouse, second, "report.html")
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT account_id, snapshot_date, net_assets FROM net_asset_history "
            "ORDER BY account_id, snapshot_date"
        ).fetchall()
    net = {(account, day): amount for account, day, amount in rows}
    accounts = sorted({account for account, _, _ in rows})
    assert [a for a, _, _ in summary.accounts] == accounts
    for account, amount, change in summary.accounts:
        assert amount == net[account, second]
        assert change == net[account, second] - net[account, first]
    assert summary.net_assets == sum(net[a, second] for a in accounts)
    assert summary.net_assets_change == sum(net[a, second] - net[a, first] for a in accounts)
    assert len(summary.moves) <= 3 and all(delta != 0 for _, _, delta in summary.moves)
    assert summary.missed == []  # both days captured, from each account's first snapshot
    assert messages.digest(summary, REDACT).body.startswith(f"Net assets on {second}: ₩")
