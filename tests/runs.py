"""Materializing the pipeline's assets through Dagster in tests (in this process, or as a user
runs it from a shell, in a process group of its own that a test can kill), and reading why a
run failed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from assets.balance import balance_tables, kis_balance_raw, portfolio_report, warehouse_views
from pipelines.definitions import resources
from tests.dagster_state import forget_defs_state_storage

REPO = Path(__file__).resolve().parent.parent

ASSETS = [kis_balance_raw, balance_tables, warehouse_views, portfolio_report]
#: Settings a developer's kis.env could hold, emptied for a process a test starts (the environment
#: wins over kis.env), so its run is the simulator's and local unless the test sets them.
DEVELOPER_SETTINGS = (
    "KIS_BASE_URL",
    "KIS_APP_KEY",
    "KIS_APP_SECRET",
    "KIS_ACCOUNTS",
    "KIS_ACCOUNTS_FILE",
    "KIS_CUSTTYPE",
    "KIS_SIM_FAULTS",
    "KIS_TARGETS_FILE",
)


def materialize(
    days: date | list[date], instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    """One run over a day, or over a range of days (as a single-run backfill launches it)."""
    days = [days] if isinstance(days, date) else days
    forget_defs_state_storage()
    tags = {}
    if len(days) > 1:
        tags = {
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        }
    return dg.materialize(
        ASSETS,
        partition_key=days[0].isoformat() if len(days) == 1 else None,
        tags=tags,
        resources=resources(),
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's error message, Failure description and metadata."""
    texts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        texts.append(data.error.message if data.error else "")
        if data.user_failure_data:
            texts.append(data.user_failure_data.description or "")
            texts.append(str(data.user_failure_data.metadata))
    return "\n".join(texts)


def failure(result: dg.ExecuteInProcessResult) -> tuple[str, dict]:
    """The one failed step's Failure description and metadata values."""
    [event] = result.get_step_failure_events()
    data = event.step_failure_data.user_failure_data
    assert data is not None
    return data.description or "", {k: v.value for k, v in data.metadata.items()}


#: One whole-day run in a process of its own (its own in-memory Dagster instance).
ONE_RUN = (
    "import sys; from datetime import date; from tests.runs import failure_text, materialize; "
    "result = materialize(date.fromisoformat(sys.argv[1])); "
    "sys.exit(0 if result.success else 'FAILED: ' + failure_text(result))"
)


def two_runs_at_once(day: str, env: dict[str, str]) -> None:
    """Two processes materializing the same day at the same time; both must succeed."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", ONE_RUN, day],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [e[-2000:] for e in errors]


def kill_while_writing(script: str, *args: str) -> None:
    """Run `script`, and SIGKILL it once it prints "writing" (in the middle of a write)."""
    writer = subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)


def not_owner_only(*roots: Path) -> list[str]:
    """Every file under `roots` that is not 0600 and every folder (the roots too) that is not
    0700, with its mode: what someone else on the machine could read."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            if stat.S_IMODE(os.stat(folder).st_mode) != 0o700:
                found.append(f"{folder}/ {oct(stat.S_IMODE(os.stat(folder).st_mode))}")
            for name in names:
                path = os.path.join(folder, name)
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                if not os.path.islink(path) and mode != 0o600:
                    found.append(f"{path} {oct(mode)}")
    return found


def materialize_command(partition: str) -> list[str]:
    """Every asset of one partition (`D`) or range (`D1...D2`), as docs/dagster.md runs it from a
    shell (`dg launch` does the same run, a second slower to start)."""
    option = "--partition-range" if "..." in partition else "--partition"
    dagster = str(Path(sys.executable).parent / "dagster")
    every_asset = ["--select", "*", option, partition]
    return [dagster, "asset", "materialize", "-m", "pipelines.definitions", *every_asset]


@dataclass(frozen=True)
class Ran:
    """How a command run by `run_command` ended."""

    returncode: int  # -9: killed (SIGKILL)
    output: str  # stdout and stderr, interleaved
    took: float  # seconds from its start to its end
    #: Seconds from the command's start to Dagster's RUN_START and to the run's end event
    #: (RUN_SUCCESS or RUN_FAILURE), when it printed them.
    run_started: float | None
    run_ended: float | None
    #: Seconds from the command's start to when `at`'s action was done (None: it had ended).
    acted_at: float | None

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the process and every process it started (its process group)."""
    os.killpg(process.pid, signal.SIGKILL)


def run_command(
    command: Sequence[str],
    env: dict[str, str],
    *,
    at: tuple[float, Callable[[subprocess.Popen[str]], None]] | None = None,
    timeout: float = 120,
) -> Ran:
    """Run `command` from the repository in a process group of its own, reading its output as
    it comes; `at` = (seconds, action): the action is done to the process at that moment if it
    still runs (e.g. `kill_group`). A command still running after `timeout` is killed and fails
    the test."""
    started = time.monotonic()
    process = subprocess.Popen(
        list(command),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    marks: dict[str, float] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            for event in ("RUN_START", "RUN_SUCCESS", "RUN_FAILURE"):
                if f" - {event} - " in line:
                    marks.setdefault(event, time.monotonic() - started)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    acted_at = None
    try:
        if at is not None:
            seconds, action = at
            try:
                process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                acted_at = time.monotonic() - started
                action(process)
        process.wait(timeout=max(timeout - (time.monotonic() - started), 1))
    except subprocess.TimeoutExpired:
        kill_group(process)
        process.wait()
        reader.join(timeout=5)
        raise AssertionError(
            f"{' '.join(command)} still ran after {timeout} s: " + "".join(lines)[-3000:]
        ) from None
    took = time.monotonic() - started
    reader.join(timeout=10)
    ended = marks.get("RUN_SUCCESS", marks.get("RUN_FAILURE"))
    return Ran(process.returncode, "".join(lines), took, marks.get("RUN_START"), ended, acted_at)
