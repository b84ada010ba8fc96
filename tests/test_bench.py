"""`make bench`'s cheaper sections at the smallest sizes: a change to the views that the bench's
own setup no longer matches fails here, not ten minutes into a bench."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "BENCH_QUICK": "1",
    "BENCH_ONLY": "queries,flatten,rebuild",
    "BENCH_QUERY_DAYS": "20",
    "BENCH_QUERY_ACCOUNTS": "3",
    "BENCH_QUERY_COLD_RUNS": "1",
    "BENCH_FLATTEN_SNAPSHOTS": "20",
    "BENCH_FLATTEN_RUNS": "1",
    "BENCH_REBUILD_DAYS": "5",
    "BENCH_REBUILD_ACCOUNTS": "2",
    "BENCH_REBUILD_RUNS": "1",
}


def test_the_cheaper_benchmarks_run_at_tiny_sizes(tmp_path: Path) -> None:
    env = {**os.environ, **TINY, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    for section in (
        "## Flattening snapshots",
        "## Rebuilding years of history from raw JSON",
        "## Reporting queries over years × many accounts",
    ):
        assert section in written
    queries = written.split("## Reporting queries over years × many accounts")[1]
    measured = [
        line for line in queries.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert len(measured) > 2, queries  # a header and the measured queries
