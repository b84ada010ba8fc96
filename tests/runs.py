"""Materializing the pipeline's assets through Dagster in tests, and reading why a run failed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg

from assets.balance import balance_tables, kis_balance_raw, portfolio_report, warehouse_views
from pipelines.definitions import resources

REPO = Path(__file__).resolve().parent.parent

ASSETS = [kis_balance_raw, balance_tables, warehouse_views, portfolio_report]


def materialize(
    days: date | list[date], instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    """One run over a day, or over a range of days (as a single-run backfill launches it)."""
    days = [days] if isinstance(days, date) else days
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
