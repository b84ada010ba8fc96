"""Notifications for real: the daemon as `make service` runs it, the simulator with faults, and
two receivers on loopback (an SMTP server for mailto://, a JSON webhook for json://, which also
takes the healthcheck GET). An account KIS refuses is told within a sensor tick of its failed
run, then once as the window is about to close and once when it has closed, never twice and
with no secret or full account number; a complete day pings the healthcheck and sends the
digest, an incomplete one neither."""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from pipelines.commands import service
from pipelines.kis.tokens import SEOUL
from pipelines.settings import REPO_ROOT, SIM_CREDENTIALS
from pipelines.simulator.server import Simulator
from tests.receivers import Inbox, Received, http_receiver, smtp_receiver
from tests.test_service import Deadline, processes, read_unit

__all__ = ["processes"]  # the fixture, shared with test_service

REFUSED = "12345678-21"  # KIS answers OPSQ2002 for it, every time
TICK = 5  # KIS_NOTIFY_TICK: seconds between the notification sensors' ticks
DEADLINE_SECONDS = 170


def seoul_now_with_room(seconds: float) -> datetime:
    """Now (Asia/Seoul), after midnight if the day has less than `seconds` left: a test's
    window must close on the day it opened."""
    now = datetime.now(SEOUL)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (midnight - now).total_seconds() < seconds:
        time.sleep((midnight - now).total_seconds() + 1)
        now = datetime.now(SEOUL)
    return now


def start_daemon(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], env: dict[str, str]
) -> Path:
    """The daemon's unit from `make service`, started as it says; the instance's home."""
    home = tmp_path / "dagster_home"
    service.install(unit_dir=tmp_path / "units", dagster_home=home, venv=REPO_ROOT / ".venv")
    service.init_instance(home, REPO_ROOT / ".venv")
    unit = read_unit(tmp_path / "units" / "kis-balance-daemon.service")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "DAGSTER_"))}
    processes.append(
        subprocess.Popen(
            unit.exec_start,
            cwd=unit.working_directory,
            env={**base, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env, **unit.environment},
            stdout=(tmp_path / "daemon.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=unit.umask,
        )
    )
    return home


def notify_env(sim: Simulator, tmp_path: Path, http: str, mailto: str) -> dict[str, str]:
    return {
        "KIS_ENV": "sim",
        "KIS_BASE_URL": sim.base_url,
        "KIS_DATA_ROOT": str(tmp_path / "data"),
        "KIS_CAPTURE_DAYS": "mon-sun",
        "KIS_NOTIFY": f"{http.replace('http://', 'json://')}/hook, {mailto}",
        "KIS_NOTIFY_DIGEST": "1",
        "KIS_HEALTHCHECK_URL": f"{http}/ping/0f4c2b9e",
        "KIS_NOTIFY_TICK": str(TICK),
    }


def told(inbox: Inbox, word: str) -> list[Received]:
    return [m for m in inbox.messages() if word in m.title]


def assert_safe(*inboxes: Inbox) -> None:
    """No full account number, app key or secret in any message."""
    for inbox in inboxes:
        for message in inbox.messages():
            text = message.title + message.body
            for secret in ("12345678", SIM_CREDENTIALS.app_key, SIM_CREDENTIALS.app_secret):
                assert secret not in text, (secret, text)


def failed_runs(home: Path) -> list[dg.RunRecord]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(
            instance.get_run_records(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), ascending=True
            )
        )


def show_log(tmp_path: Path) -> None:
    print((tmp_path / "daemon.log").read_text(errors="replace")[-8000:])


def test_a_refused_account_is_told_at_once_and_as_the_window_closes(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    deadline = Deadline(DEADLINE_SECONDS)
    now = seoul_now_with_room(240)
    # the window closes at the first whole minute at least 75 s away; the warning comes 30 s
    # before that, once the first attempts have run
    closes = (now + timedelta(seconds=75 + 59)).replace(second=0, microsecond=0)
    opens = max(now - timedelta(minutes=1), now.replace(hour=0, minute=0))
    with (
        Simulator(faults=f"{REFUSED}:business_error") as sim,
        http_receiver() as (http, hooks),
        smtp_receiver() as (mailto, mails),
    ):
        home = start_daemon(
            tmp_path,
            processes,
            {
                **notify_env(sim, tmp_path, http, mailto),
                "KIS_CAPTURE_WINDOW": f"{opens:%H:%M}-{closes:%H:%M}",
                "KIS_CAPTURE_EVERY": "0.5",
                "KIS_NOTIFY_CLOSING_MINUTES": "0.5",
            },
        )
        deadline.mark(f"daemon started; the window closes at {closes:%H:%M:%S}")
        try:
            [refused] = deadline.wait_for("the refusal told", lambda: told(hooks, "capture failed"))
            first = failed_runs(home)[0]
            assert first.end_time is not None
            deadline.mark(f"refusal told {refused.at - first.end_time:.1f} s after the run ended")
            assert refused.at - first.end_time <= TICK + 10  # the next tick after the failure
            assert "****5678-21" in refused.title and "OPSQ2002" in refused.body
            assert "조회 권한이 없는 계좌입니다" in refused.body and "What to do:" in refused.body
            deadline.wait_for("the refusal mailed", lambda: told(mails, "capture failed"))

            [closing] = deadline.wait_for("the closing warning", lambda: told(hooks, "closes"))
            deadline.mark(f"closing warning: {closing.title}")
            assert closing.at < closes.timestamp()
            assert re.search(
                r"- \*{4}5678-21: attempts \d+(, \d+)*; last error: OPSQ2002 ", closing.body
            )
            assert "5678-01" not in closing.body  # that account is in

            [closed] = deadline.wait_for("the closed message", lambda: told(hooks, "missed"))
            deadline.mark(f"closed: {closed.title}")
            assert closed.at >= closes.timestamp() and "- ****5678-21" in closed.body
            deadline.wait_for("both mailed", lambda: len(mails.messages()) == 3)
            time.sleep(3 * TICK)  # more failed runs and ticks: nothing is told twice
            assert len(failed_runs(home)) >= 2
            for inbox in (hooks, mails):
                titles = [m.title for m in inbox.messages()]
                assert len(titles) == 3, titles
                assert [len(told(inbox, w)) for w in ("capture failed", "closes", "missed")] == [
                    1,
                    1,
                    1,
                ]
            assert hooks.get_pings() == []  # an incomplete day: no healthcheck, no digest
            assert_safe(hooks, mails)
        except BaseException:
            print(f"--- webhook: {hooks.messages()}\n--- mail: {mails.messages()}")
            show_log(tmp_path)
            raise


def test_a_complete_day_pings_the_healthcheck_and_sends_the_digest_once(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    deadline = Deadline(DEADLINE_SECONDS)
    now = seoul_now_with_room(240)
    opens = max(now - timedelta(minutes=1), now.replace(hour=0, minute=0))
    with (
        Simulator() as sim,
        http_receiver() as (http, hooks),
        smtp_receiver() as (mailto, mails),
    ):
        start_daemon(
            tmp_path,
            processes,
            {
                **notify_env(sim, tmp_path, http, mailto),
                "KIS_CAPTURE_WINDOW": f"{opens:%H:%M}-24:00",
                "KIS_CAPTURE_EVERY": "0.1",
            },
        )
        try:
            [ping] = deadline.wait_for("the healthcheck ping", hooks.get_pings)
            deadline.mark("healthcheck pinged")
            assert ping.path == "/ping/0f4c2b9e"
            [digest] = deadline.wait_for("the digest", lambda: told(hooks, "KIS balance 20"))
            deadline.mark(f"digest: {digest.title}")
            day = now.date().isoformat()
            assert digest.title.startswith(f"KIS balance {day}: ₩")
            assert "- ****5678-01: ₩" in digest.body and "- ****5678-21: ₩" in digest.body
            assert f"portfolio-{day}.html" in digest.body
            assert "Missed this month: none" in digest.body
            deadline.wait_for("the digest mailed", mails.messages)
            time.sleep(3 * TICK + 6)  # the next attempt's due time and ticks: nothing again
            assert len(hooks.get_pings()) == 1
            assert [m.title for m in hooks.messages()] == [digest.title]
            assert [m.title for m in mails.messages()] == [digest.title]
            assert_safe(hooks, mails)
        except BaseException:
            print(f"--- webhook: {hooks.messages()}\n--- mail: {mails.messages()}")
            show_log(tmp_path)
            raise
