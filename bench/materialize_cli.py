"""One day's full materialization from the shell, against the framework floor and Python's.

Each command runs in a subprocess with KIS_DATA_ROOT, XDG_CACHE_HOME and DAGSTER_HOME in a
temporary directory and no KIS_* variable from the caller (so: simulator, its 2 accounts):

* pipeline: `dagster asset materialize -m pipelines.definitions --select '*' --partition <today>`
* framework floor: the same command on bench/floor_definitions.py (one asset returning nothing)
* absolute floor: `python -c pass` with the same interpreter

Each target gets one temporary directory for all its runs (as a daily schedule reuses its
DAGSTER_HOME and data root); the first run is a warm-up (it also creates Dagster's SQLite
storage) and is discarded, the median is over the following runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import env_int, median, seconds, verdict

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_RATIO = 1.3


def today_seoul() -> str:
    return datetime.now(ZoneInfo("Asia/Seoul")).date().isoformat()


def environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    home = tmp / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(
        KIS_DATA_ROOT=str(tmp / "data"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        DAGSTER_HOME=str(home),
        DAGSTER_DISABLE_TELEMETRY="1",
    )
    return env


def materialize_command(module: str) -> list[str]:
    return [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        module,
        "--select",
        "*",
        "--partition",
        today_seoul(),
    ]


def timed_runs(command: list[str], runs: int) -> list[float]:
    """Wall time of each run after the first (the warm-up); a failed run aborts the bench."""
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env = environment(Path(tmp))
        for _ in range(runs + 1):
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"{command} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            times.append(elapsed)
    return times[1:]


def rows() -> list[list[str]]:
    runs = env_int("BENCH_CLI_RUNS", 2, 2)  # measured runs, after one warm-up
    pipeline = median(timed_runs(materialize_command("pipelines.definitions"), runs))
    framework = median(timed_runs(materialize_command("bench.floor_definitions"), runs))
    python = median(timed_runs([sys.executable, "-c", "pass"], runs))
    ratio = pipeline / framework
    note = f"median of {runs} after 1 warm-up; simulator, 2 accounts, partition {today_seoul()}"
    return [
        [
            "`dagster asset materialize` all 4 assets, one day",
            seconds(pipeline),
            f"{seconds(framework)} (framework floor: 1 no-op asset)",
            f"{ratio:.2f}×",
            f"≤ {TARGET_RATIO}× framework floor: {verdict(ratio <= TARGET_RATIO)}",
            note,
        ],
        [
            "`dagster asset materialize` no-op asset (framework floor)",
            seconds(framework),
            f"{seconds(python)} (`python -c pass`)",
            f"{framework / python:.1f}×",
            "—",
            "what Dagster's CLI costs before any asset code runs",
        ],
        [
            "pipeline vs absolute floor",
            seconds(pipeline),
            f"{seconds(python)} (`python -c pass`)",
            f"{pipeline / python:.1f}×",
            "—",
            note,
        ],
    ]
