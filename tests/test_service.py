"""The service: the systemd units rendered by `make service`, and their two processes started
exactly as the units say (systemd itself does not run here), against a simulator whose
maintenance outage outlasts the client's retries. Today's rows land with nobody acting, through
the capture sensor's second attempt, and no balance request follows once the day is in."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest
import requests

from pipelines.commands import service
from pipelines.kis.tokens import SEOUL
from pipelines.settings import REPO_ROOT
from pipelines.simulator.server import Simulator
from tests.runs import not_owner_only

ACCOUNTS = ("12345678-01", "12345678-21")
#: Longer than the client's five attempts for the first account (backoff at most 0.5+1+2+4 s),
#: so the first attempt fails (the second account may land in it or in the next attempt).
OUTAGE_SECONDS = 9
EVERY_MINUTES = 0.1  # an attempt every 6 s
DEADLINE_SECONDS = 180  # every wait below is bounded by this, from the start of the test
T = TypeVar("T")


@dataclass(frozen=True)
class Unit:
    working_directory: str
    environment: dict[str, str]
    exec_start: list[str]
    #: UMask= (systemd's default for a service: 0022)
    umask: int = 0o022


def read_unit(path: Path) -> Unit:
    """The [Service] lines a user unit needs here: WorkingDirectory, Environment, ExecStart,
    UMask."""
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values.setdefault(key.strip(), []).append(value.strip().replace("%%", "%"))
    environment = dict(
        word.split("=", 1) for value in values["Environment"] for word in shlex.split(value)
    )
    [working_directory], [exec_start] = values["WorkingDirectory"], values["ExecStart"]
    umask = int(values["UMask"][-1], 8) if "UMask" in values else 0o022
    return Unit(working_directory, environment, shlex.split(exec_start), umask)


def test_the_units_run_the_daemon_and_the_ui_from_this_checkout(tmp_path: Path) -> None:
    home = tmp_path / "state with space" / "dagster"
    written = service.install(
        unit_dir=tmp_path / "units", dagster_home=home, venv=REPO_ROOT / ".venv", port=3123
    )
    assert sorted(p.name for p in written) == sorted([*service.UNITS, "dagster.yaml"])
    daemon = read_unit(tmp_path / "units" / "kis-balance-daemon.service")
    webserver = read_unit(tmp_path / "units" / "kis-balance-webserver.service")
    workspace = str(REPO_ROOT / "workspace.yaml")
    assert daemon.exec_start == [
        str(REPO_ROOT / ".venv" / "bin" / "dagster-daemon"),
        "run",
        "-w",
        workspace,
    ]
    assert webserver.exec_start == [
        str(REPO_ROOT / ".venv" / "bin" / "dagster-webserver"),
        "-w",
        workspace,
        "-h",
        "127.0.0.1",
        "-p",
        "3123",
    ]
    for unit in (daemon, webserver):
        assert unit.environment["DAGSTER_HOME"] == str(home)
        assert unit.working_directory == str(REPO_ROOT)
        assert unit.umask == 0o077  # what they write is readable by the user only
    assert not_owner_only(home) == []
    text = (home / "dagster.yaml").read_text()
    assert "class: QueuedRunCoordinator" in text and "class: WatchedRunLauncher" in text
    # installing again keeps an instance file the user edited
    (home / "dagster.yaml").write_text(text + "\n# mine\n")
    service.install(unit_dir=tmp_path / "units", dagster_home=home, venv=REPO_ROOT / ".venv")
    assert (home / "dagster.yaml").read_text().endswith("# mine\n")
    assert service.default_dagster_home().parts[-3:] == ("state", "kis-balance-history", "dagster")


def make_dagster_home(config: Path) -> str:
    """The instance `make run` records its runs in, with XDG_CONFIG_HOME=`config`."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    done = subprocess.run(
        ["make", "-s", "dagster-home"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_make_run_uses_the_instance_of_the_service_installed_for_this_checkout(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    assert make_dagster_home(config) == str(REPO_ROOT / ".dagster")  # no service
    units = config / "systemd" / "user"
    home = tmp_path / "state with space" / "dagster 100%"
    other = tmp_path / "other checkout"
    service.install(unit_dir=units, dagster_home=home, venv=REPO_ROOT / ".venv", repo=other)
    assert make_dagster_home(config) == str(REPO_ROOT / ".dagster")  # another checkout's
    service.install(unit_dir=units, dagster_home=home, venv=REPO_ROOT / ".venv")
    assert make_dagster_home(config) == str(home)


# -- the daemon and the UI, for real ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deadline:
    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.end = self.start + seconds

    def mark(self, what: str) -> None:
        """A milestone, printed with the time since the start (pytest shows it on failure)."""
        print(f"{time.monotonic() - self.start:6.1f} s  {what}")

    def wait_for(self, what: str, probe: Callable[[], T | None], every: float = 1.0) -> T:
        """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
        while True:
            try:
                value = probe()
            except (requests.RequestException, duckdb.Error, OSError):
                value = None
            if value:
                return value
            if time.monotonic() > self.end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(every)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started processes, each in its own process group; all of it is stopped afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # the code servers and runs the daemon started are in its group: none may outlive it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def window_open_for_the_test() -> datetime:
    """Now (Asia/Seoul), after midnight if it is a few minutes away: the capture window the
    tests open (see capture_window) must stay open while they run."""
    now = datetime.now(SEOUL)
    if now.hour == 23 and now.minute >= 57:
        time.sleep((now.replace(minute=59, second=59) - now).total_seconds() + 2)
        now = datetime.now(SEOUL)
    return now


def capture_window(now: datetime) -> str:
    """From a minute before now to midnight (Asia/Seoul)."""
    start = max(now - timedelta(minutes=1), now.replace(hour=0, minute=0))
    return f"{start:%H:%M}-24:00"


class Ui:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def query(self, text: str) -> dict[str, Any]:
        response = requests.post(self.url, json={"query": text}, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return dict(body["data"])

    def capture_runs(self, day: str) -> list[dict[str, Any]]:
        """The runs the capture sensor requested for the day, oldest first."""
        selector = f'{{tags: [{{key: "kis/capture_day", value: "{day}"}}]}}'
        data = self.query(
            f"{{ runsOrError(filter: {selector}) "
            "{ ... on Runs { results { runId status tags { key value } } } } }"
        )
        runs = data["runsOrError"]["results"]
        return [
            {**run, "tags": {t["key"]: t["value"] for t in run["tags"]}} for run in reversed(runs)
        ]

    def ticks(self) -> list[dict[str, Any]]:
        data = self.query(
            "{ sensorOrError(sensorSelector: {repositoryLocationName: "
            '"kis_balance_history", repositoryName: "__repository__", '
            'sensorName: "balance_capture"}) { ... on Sensor { sensorState { ticks(limit: 50) '
            "{ status timestamp skipReason runIds } } } } }"
        )
        return list(data["sensorOrError"]["sensorState"]["ticks"])


def today_rows(data_root: Path, day: str) -> list[tuple[str]]:
    with duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(
            f"SELECT account_id FROM account_summary WHERE snapshot_date = DATE '{day}' ORDER BY 1"
        ).fetchall()


def test_the_service_captures_today_through_an_outage_with_nobody_acting(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    deadline = Deadline(DEADLINE_SECONDS)
    now = window_open_for_the_test()
    today = now.date().isoformat()
    port = free_port()
    # as `make service` does: the units, the instance's dagster.yaml, its storage
    assert (
        service.main(
            [
                *("--unit-dir", str(tmp_path / "units")),
                *("--dagster-home", str(tmp_path / "dagster_home")),
                *("--venv", str(REPO_ROOT / ".venv")),
                *("--port", str(port)),
            ]
        )
        == 0
    )
    deadline.mark("units installed, storage created")
    data_root = tmp_path / "data"
    with Simulator(faults=f"*:maintenance={OUTAGE_SECONDS}") as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "DAGSTER_"))}
        env.update(
            KIS_ENV="sim",
            KIS_BASE_URL=sim.base_url,
            KIS_DATA_ROOT=str(data_root),
            KIS_CAPTURE_WINDOW=capture_window(now),
            KIS_CAPTURE_EVERY=str(EVERY_MINUTES),
            KIS_CAPTURE_DAYS="mon-sun",
            XDG_CACHE_HOME=str(tmp_path / "cache"),
        )
        logs = {}
        for name in service.UNITS:
            unit = read_unit(tmp_path / "units" / name)
            logs[name] = (tmp_path / f"{name}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    unit.exec_start,
                    cwd=unit.working_directory,
                    env={**env, **unit.environment},
                    stdout=logs[name],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, for the cleanup
                    umask=unit.umask,
                )
            )
        try:
            ui = Ui(port)
            deadline.wait_for("the UI", lambda: ui.query("{ version }"))
            deadline.mark("the UI answers")
            # the first attempt meets the outage (token issuance refused with a 503 page)...
            first = deadline.wait_for(
                "a capture run to end",
                lambda: [
                    r for r in ui.capture_runs(today) if r["status"] in ("SUCCESS", "FAILURE")
                ],
            )[0]
            deadline.mark(f"first capture run: {first['status']}, attempt {first['tags']}")
            assert first["status"] == "FAILURE"
            assert sim.requests["maintenance"] >= 5
            # ...and a later attempt, nobody acting, lands the day in the views
            deadline.wait_for("today's rows", lambda: len(today_rows(data_root, today)) == 2)
            deadline.mark("today's rows are in the warehouse")
            runs = deadline.wait_for(
                "the landing run to finish",
                lambda: (
                    (runs := ui.capture_runs(today))
                    and runs[-1]["status"] in ("SUCCESS", "FAILURE")
                    and runs
                ),
            )
            deadline.mark(f"runs: {[(r['status'], r['tags']) for r in runs]}")
            assert runs[-1]["status"] == "SUCCESS"
            assert len(runs) >= 2
            attempt = int(runs[-1]["tags"]["kis/capture_attempt"])
            assert attempt > int(first["tags"]["kis/capture_attempt"])
            assert set(runs[-1]["tags"]["kis/capture_accounts"].split(",")) <= set(ACCOUNTS)
            assert today_rows(data_root, today) == [(a,) for a in ACCOUNTS]

            # the day is in: the next attempt is due within EVERY; its tick skips, saying why
            calls, landed_at = sim.requests["balance"], time.time()
            due = landed_at + EVERY_MINUTES * 60
            tick = deadline.wait_for(
                "a tick after the next attempt was due",
                lambda: [
                    t for t in ui.ticks() if t["timestamp"] > due and t["status"] == "SKIPPED"
                ],
            )[0]
            deadline.mark(f"tick after the next due attempt: {tick['skipReason']}")
            assert "All 2 accounts have today's snapshot" in tick["skipReason"]
            assert sim.requests["balance"] == calls
            assert len(ui.capture_runs(today)) == len(runs)
            # the data, Dagster's storage and logs, the token cache: the user's only
            assert not_owner_only(data_root, tmp_path / "dagster_home", tmp_path / "cache") == []
        except BaseException:
            with contextlib.suppress(Exception):
                print(f"--- runs: {ui.capture_runs(today)}\n--- ticks: {ui.ticks()[:10]}")
            print(f"--- simulator: {dict(sim.requests)}")
            for name, log in logs.items():
                log.flush()
                print(f"--- {name} (the last 8000 characters)")
                print((tmp_path / f"{name}.log").read_text(errors="replace")[-8000:])
            raise
        finally:
            for log in logs.values():
                log.close()


# -- a run whose process died -----------------------------------------------------------------

#: Run monitoring's poll in the test instance (the shipped files check every 30 s).
POLL_SECONDS = 2
#: How soon after the kill the run must be FAILURE: a few polls.
DETECTED_WITHIN = 30


def run_status(home: Path, run_id: str) -> str:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        return str(run.status.value)


def started_run(home: Path, deadline: Deadline, **tags: str) -> tuple[str, int]:
    """The run (with `tags`) once STARTED and its process has recorded where it runs: its id and
    the PID of its process."""
    import dagster as dg

    from assets.run_launcher import WORKER_TAG

    def probe() -> tuple[str, int] | None:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for run in instance.get_runs(filters=dg.RunsFilter(tags=tags)):
                if run.status == dg.DagsterRunStatus.STARTED and WORKER_TAG in run.tags:
                    [start] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
                    assert start.dagster_event is not None and start.dagster_event.pid
                    return run.run_id, start.dagster_event.pid
        return None

    return deadline.wait_for(f"a started run tagged {tags}", probe, every=0.5)


def failure_message(home: Path, run_id: str) -> str:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return "\n".join(
            entry.message
            for entry in instance.all_logs(run_id)
            if entry.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
        )


def killed_and_failed(home: Path, deadline: Deadline, run_id: str, what: str, *pids: int) -> None:
    """SIGKILL `pids`, then the run must be FAILURE within DETECTED_WITHIN."""
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    deadline.wait_for(
        f"{what} to be FAILURE", lambda: run_status(home, run_id) == "FAILURE", every=0.5
    )
    deadline.mark(f"{what}: FAILURE {time.monotonic() - killed:.1f} s after the kill")
    assert time.monotonic() - killed < DETECTED_WITHIN


def test_a_run_whose_process_died_is_failed_within_seconds(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """The service's instance (a poll of 2 s instead of 30): a capture run killed together with
    its code server (as a restart of the daemon's service or the OOM killer leaves it), and a run
    started from a terminal (`make run`) killed on its own. Before, both stayed STARTED until
    their maximum runtime (an hour, or never for a hand run) and held today's capture."""
    deadline = Deadline(DEADLINE_SECONDS)
    now = window_open_for_the_test()
    today = now.date().isoformat()
    home = tmp_path / "dagster_home"
    service.install(unit_dir=tmp_path / "units", dagster_home=home, venv=REPO_ROOT / ".venv")
    instance_file = home / "dagster.yaml"
    shipped = instance_file.read_text()
    assert "poll_interval_seconds: 30" in shipped and "class: WatchedRunLauncher" in shipped
    instance_file.write_text(
        shipped.replace("poll_interval_seconds: 30", f"poll_interval_seconds: {POLL_SECONDS}")
    )
    service.init_instance(home, REPO_ROOT / ".venv")
    with Simulator(faults="*:hang=600") as sim:  # every run waits on KIS until it is killed
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "DAGSTER_"))}
        env.update(
            KIS_ENV="sim",
            KIS_BASE_URL=sim.base_url,
            KIS_DATA_ROOT=str(tmp_path / "data"),
            KIS_CAPTURE_WINDOW=capture_window(now),
            KIS_CAPTURE_EVERY=str(EVERY_MINUTES),
            KIS_CAPTURE_DAYS="mon-sun",
            KIS_HISTORY_START="2024-05-01",  # a past day for the hand run
            XDG_CACHE_HOME=str(tmp_path / "cache"),
        )
        unit = read_unit(tmp_path / "units" / "kis-balance-daemon.service")
        log = (tmp_path / "daemon.log").open("wb")
        processes.append(
            subprocess.Popen(
                unit.exec_start,
                cwd=unit.working_directory,
                env={**env, **unit.environment},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=unit.umask,
            )
        )
        try:
            # a capture run, killed with the code server that runs it
            run_id, pid = started_run(home, deadline, **{"kis/capture_day": today})
            deadline.mark(f"capture run {run_id} started in process {pid}")
            server = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            killed_and_failed(home, deadline, run_id, "the capture run", server, pid)
            assert f"the run's process (pid {pid}) is gone" in failure_message(home, run_id)

            # a run from a terminal, in a process of its own, killed alone
            launch = ["launch", "--assets", "*", "--partition", "2024-05-02"]
            hand = subprocess.Popen(
                [str(REPO_ROOT / ".venv" / "bin" / "dg"), *launch],
                cwd=REPO_ROOT,
                env={**env, "DAGSTER_HOME": str(home)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            processes.append(hand)
            run_id, pid = started_run(home, deadline, **{"dagster/partition": "2024-05-02"})
            assert pid == hand.pid
            killed_and_failed(home, deadline, run_id, "the hand run", pid)
        except BaseException:
            log.flush()
            print((tmp_path / "daemon.log").read_text(errors="replace")[-8000:])
            raise
        finally:
            log.close()
