"""One day for 1,000 accounts end to end, from the shell: wall time and peak memory.

`dagster asset materialize --select '*'` for today's partition, as in materialize_cli, with
BENCH_SCALE_KEYS app keys × 40 accounts in an accounts file, fetched side by side
(KIS_KEYS_IN_FLIGHT = keys) from the simulator in its own process (20 requests/s per key).
Beside it, the same command for one account: what the 999 others add.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import materialize_cli
from bench.common import env_int, seconds
from bench.fetch_keys import ACCOUNTS_PER_KEY, SERVER_LIMIT, SimulatorProcess, accounts_file


def rows() -> list[list[str]]:
    keys = env_int("BENCH_SCALE_KEYS", 25, 5)
    runs = env_int("BENCH_SCALE_RUNS", 2, 1)
    command = materialize_cli.materialize_command("pipelines.definitions")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, SimulatorProcess() as url:
        path, environ = accounts_file(Path(tmp), keys)
        extra = {
            **environ,
            "KIS_ENV": "sim",
            "KIS_BASE_URL": url,
            "KIS_ACCOUNTS": "",
            "KIS_ACCOUNTS_FILE": str(path),
            "KIS_KEYS_IN_FLIGHT": str(keys),
        }
        many, many_rss = materialize_cli.timed_runs(command, runs, extra_env=extra)
        one, one_rss = materialize_cli.timed_runs(
            command, runs, extra_env={"KIS_ENV": "sim", "KIS_BASE_URL": url}
        )
    accounts = keys * ACCOUNTS_PER_KEY
    fetch_floor = ACCOUNTS_PER_KEY / SERVER_LIMIT
    note = (
        f"median of {runs} after 1 warm-up; {keys} keys × {ACCOUNTS_PER_KEY} accounts, "
        f"KIS_KEYS_IN_FLIGHT={keys}; simulator in its own process; fetching alone can go no "
        f"faster than {seconds(fetch_floor)} (40 accounts per key at 20/s)"
    )
    return [
        [
            f"one day, {accounts:,} accounts, whole pipeline from the shell: wall time",
            seconds(many),
            f"{seconds(one)} (the same run for 1 account)",
            f"{many / one:.1f}×",
            "—",
            note,
        ],
        [
            f"one day, {accounts:,} accounts: peak RSS",
            f"{many_rss / 1024:.0f} MB",
            f"{one_rss / 1024:.0f} MB (1 account)",
            f"{many_rss / one_rss:.1f}×",
            "—",
            "ru_maxrss of the CLI process (wait4)",
        ],
    ]
