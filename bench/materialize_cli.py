"""One day's full materialization from the shell, against the framework floor and Python's.

Each command runs in a subprocess with KIS_DATA_ROOT, XDG_CACHE_HOME and DAGSTER_HOME in a
temporary directory (DAGSTER_HOME holding a copy of the project's .dagster/dagster.yaml), no
KIS_* variable from the caller, KIS_ACCOUNTS set to one account (so: the simulator, one
account) and KIS_CAPTURE_DAYS=mon-sun (today is a partition on any day):

* pipeline: `dagster asset materialize -m pipelines.definitions --select '*' --partition <today>`
* framework floor: the same command on bench/floor_definitions.py (one asset returning nothing)
* graph floor: the same command on bench/shape_floor_definitions.py, the pipeline's own asset
  graph (assets, steps, checks) with no-op bodies: what Dagster costs for this graph
* absolute floor: `python -c pass` with the same interpreter
* the pipeline again on a data root already holding BENCH_CLI_HISTORY_DAYS of 100 accounts'
  history (compacted, as runs leave it): a one-day run's time and memory must not grow with it.
* the check after each warehouse build (pipelines/warehouse/view_check.py), timed inside
  `warehouse.build` in this process on both data roots after a day's two files were rewritten
  as a run writes them: it must cost under 5% of the one-day run.

Each target gets one temporary directory for all its runs (as a daily schedule reuses its
DAGSTER_HOME and data root); the first run is a warm-up (it also creates Dagster's SQLite
storage) and is discarded, the median is over the following runs. Peak RSS is the child's own
ru_maxrss from wait4 in a small launcher process (the run executes inside the CLI process; the
simulator is a thread).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from bench.common import env_int, median, seconds, verdict
from bench.report_queries import write_history
from pipelines.lake.compaction import CompactedMonths, TableFiles
from pipelines.reporting.report import NET_ASSETS_DAYS
from pipelines.storage.roots import Storage

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_RATIO = 1.3
#: The view check after a build may cost this share of a one-day run.
CHECK_SHARE = 0.05
#: A one-day run on years of history may use this much more memory than on none.
MEMORY_GROWTH = 1.10
ACCOUNT = "12345678-01"


def today_seoul() -> str:
    return datetime.now(ZoneInfo("Asia/Seoul")).date().isoformat()


def environment(tmp: Path, data_root: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    home = tmp / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    env.update(
        KIS_DATA_ROOT=str(data_root or tmp / "data"),
        KIS_ACCOUNTS=ACCOUNT,
        # today is a partition whatever the weekday
        KIS_CAPTURE_DAYS="mon-sun",
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


#: Runs argv[2:] with its output in the file argv[1] and prints its wall time and peak RSS.
#: A small, fresh launcher process: a child forked straight from the bench (which has grown
#: large by then) would count the bench's pages in its ru_maxrss until it execs.
LAUNCHER = """
import json, os, subprocess, sys, time
with open(sys.argv[1], "w") as out:
    started = time.perf_counter()
    child = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps([time.perf_counter() - started, usage.ru_maxrss,
                  os.waitstatus_to_exitcode(status)]))
"""


def run_measured(command: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of one run; a failed run aborts the bench."""
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(log), *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed, max_rss, exit_code = json.loads(launched.stdout)
    if exit_code != 0:
        raise RuntimeError(f"{command} failed:\n{log.read_text()[-3000:]}")
    return elapsed, max_rss


def timed_runs(
    command: list[str],
    runs: int,
    *,
    extra_env: dict[str, str] | None = None,
    data_root: Path | None = None,
) -> tuple[float, int]:
    """Median wall time and median peak RSS of the runs after the first (the warm-up)."""
    measured = []
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env = environment(Path(tmp), data_root) | (extra_env or {})
        for _ in range(runs + 1):
            measured.append(run_measured(command, env, Path(tmp) / "run.log"))
    times, rss = zip(*measured[1:], strict=True)
    return median(times), int(median(rss))


def graph_shape() -> list[dict[str, Any]]:
    """The pipeline's asset nodes: each step's assets (with deps) and checks."""
    from pipelines.definitions import defs

    return [
        {
            "name": node.node_def.name,
            "assets": {
                key.to_user_string(): sorted(d.to_user_string() for d in node.asset_deps[key])
                for key in node.keys
            },
            "checks": [[c.asset_key.to_user_string(), c.name] for c in node.check_specs],
        }
        for node in defs.resolve_asset_graph().assets_defs
    ]


def history_root(tmp: Path, day_count: int) -> Path:
    """A data root holding `day_count` days × 100 accounts of compacted history, ending before
    the report's one-year chart starts: what is measured is the history, not 100 more accounts
    on today's page."""
    data_root = tmp / "history"
    today = datetime.now(ZoneInfo("Asia/Seoul")).date()
    first = today - timedelta(days=NET_ASSETS_DAYS + day_count)
    write_history(data_root, day_count, 100, first)
    CompactedMonths(data_root).refresh(today)
    return data_root


def check_seconds(data_root: Path, runs: int) -> tuple[float, float]:
    """Median time of the view check inside `warehouse.build` on `data_root` (reading what the
    previous build checked, and the check), each build after the newest day's two files were
    rewritten (as a day's run writes them, so they are read whole: the files no earlier build
    checked); and the time of the first build's check, which reads every file behind the views
    (once, after upgrading)."""
    from pipelines.lake import schema
    from pipelines.lake.tables import ParquetTables
    from pipelines.warehouse import view_check, warehouse

    tables = ParquetTables(data_root)
    day = tables.days("account_summary")[-1]
    timings: list[float] = []
    check, previously_checked = view_check.check, view_check.previously_checked

    def timed_previous(warehouse: Path) -> dict[str, str]:
        started = time.perf_counter()
        found = previously_checked(warehouse)
        timings.append(time.perf_counter() - started)
        return found

    def timed(
        con: duckdb.DuckDBPyConnection,
        storage: Storage,
        files: Mapping[str, TableFiles],
        previous: Mapping[str, str],
        reads: Mapping[str, str],
    ) -> None:
        started = time.perf_counter()
        check(con, storage, files, previous, reads)
        timings[-1] += time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        view_check.check, view_check.previously_checked = timed, timed_previous
        try:
            warehouse.build(data_root, path=path)  # every file read whole once
            first = timings.pop()
            for _ in range(runs):
                for name in schema.TABLES:
                    tables.write(name, day, tables.read(name, day))
                warehouse.build(data_root, path=path)
        finally:
            view_check.check, view_check.previously_checked = check, previously_checked
    return median(timings), first


def rows() -> list[list[str]]:
    runs = env_int("BENCH_CLI_RUNS", 3, 2)  # measured runs, after one warm-up
    history_days = env_int("BENCH_CLI_HISTORY_DAYS", 1826, 365)
    with tempfile.TemporaryDirectory(prefix="bench-cli-shape-") as tmp:
        shape = Path(tmp) / "shape.json"
        nodes = graph_shape()
        shape.write_text(json.dumps(nodes))
        steps = len(nodes)
        assets = sum(len(n["assets"]) for n in nodes)
        checks = sum(len(n["checks"]) for n in nodes)
        pipeline, pipeline_rss = timed_runs(materialize_command("pipelines.definitions"), runs)
        graph, _ = timed_runs(
            materialize_command("bench.shape_floor_definitions"),
            runs,
            extra_env={"BENCH_SHAPE_FILE": str(shape)},
        )
        framework, _ = timed_runs(materialize_command("bench.floor_definitions"), runs)
        python, _ = timed_runs([sys.executable, "-c", "pass"], runs)
        started = time.perf_counter()
        big = history_root(Path(tmp), history_days)
        setup = time.perf_counter() - started
        on_history, history_rss = timed_runs(
            materialize_command("pipelines.definitions"), runs, data_root=big
        )
        check_runs = max(runs, 5)
        check_on_history, first_on_history = check_seconds(big, check_runs)
        small = Path(tmp) / "one-day"
        write_history(small, 1, 1, datetime.now(ZoneInfo("Asia/Seoul")).date())
        check_on_one_day, _ = check_seconds(small, check_runs)
    ratio = pipeline / framework
    note = f"median of {runs} after 1 warm-up; simulator, 1 account, partition {today_seoul()}"
    growth = history_rss / pipeline_rss
    history = (
        f"{history_days} days × 100 accounts already in the data root, ending before the "
        f"report's one-year chart (compacted; setup {setup:.0f} s, not measured)"
    )
    return [
        [
            f"`dagster asset materialize` the whole pipeline ({assets} assets in {steps} steps, "
            f"{checks} checks), one day",
            seconds(pipeline),
            f"{seconds(framework)} (framework floor: 1 no-op asset)",
            f"{ratio:.2f}×",
            f"≤ {TARGET_RATIO}× framework floor: {verdict(ratio <= TARGET_RATIO)}",
            note,
        ],
        [
            "the same asset graph with no-op bodies (graph floor)",
            seconds(graph),
            f"{seconds(framework)} (framework floor: 1 no-op asset)",
            f"{graph / framework:.2f}×",
            "—",
            "Dagster's own cost for this graph: its steps and the events it stores for each "
            f"asset and check; bench/shape_floor_definitions.py; {note}",
        ],
        [
            "pipeline vs graph floor",
            seconds(pipeline),
            f"{seconds(graph)} (graph floor)",
            f"{pipeline / graph:.2f}×",
            "—",
            f"what our code adds: {seconds(pipeline - graph)} of imports (pyarrow, duckdb, "
            "requests), the fetch, flattening, checks, Parquet, views and the report",
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
            "the whole pipeline, one day, on years of history: wall time",
            seconds(on_history),
            f"{seconds(pipeline)} (same run on an empty data root)",
            f"{on_history / pipeline:.2f}×",
            "—",
            f"{history}; {note}",
        ],
        [
            "the view check after the warehouse build, one day's data root",
            seconds(check_on_one_day),
            f"{seconds(pipeline)} (the one-day run)",
            f"{check_on_one_day / pipeline:.1%}",
            f"< {CHECK_SHARE:.0%} of the run: "
            + verdict(check_on_one_day < CHECK_SHARE * pipeline),
            f"median of {check_runs} builds, each after the day's two files were rewritten: "
            "they are read whole (the files no earlier build checked) and each base view's "
            "files are counted (every file's footer); timed inside warehouse.build "
            "(pipelines/warehouse/view_check.py)",
        ],
        [
            "the view check after the warehouse build, on years of history",
            seconds(check_on_history),
            f"{seconds(on_history)} (the one-day run on years of history)",
            f"{check_on_history / on_history:.1%}",
            f"< {CHECK_SHARE:.0%} of the run: "
            + verdict(check_on_history < CHECK_SHARE * on_history),
            f"{history}; as above; the first build after upgrading reads every file behind the "
            f"views whole, once: {seconds(first_on_history)}",
        ],
        [
            "the whole pipeline, one day, on years of history: peak RSS",
            f"{history_rss / 1024:.0f} MB",
            f"{pipeline_rss / 1024:.0f} MB (same run on an empty data root)",
            f"{growth:.2f}×",
            f"≤ {MEMORY_GROWTH}× (does not grow with history): {verdict(growth <= MEMORY_GROWTH)}",
            f"{history}; ru_maxrss of the CLI process (wait4)",
        ],
    ]
