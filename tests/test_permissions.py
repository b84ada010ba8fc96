"""Every file the pipeline writes is readable by its owner only, after a real run through Dagster:
the data root (raw, Parquet, compacted months, reports, the warehouse, locks), DAGSTER_HOME
(Dagster's SQLite storage, compute logs, stored outputs) and the token cache are 0600 files in
0700 folders, however permissive the umask the commands start with.

`make demo` is run as a user runs it, over a DAGSTER_HOME as a fresh clone has it (0755, its
dagster.yaml 0644); the demo module is also run without make, as a code server or a run in a
container starts (the image makes DAGSTER_HOME private, the code sets the umask when it loads).
The service's processes are checked by tests/test_service.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pipelines.ingest.fetch import today_in_seoul
from tests.runs import REPO, not_owner_only

#: The demo's days: the capture days of the past month, here one weekday: four or five runs.
WEEKDAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


#: uv's own cache, as the developer's environment has it (read before the tests isolate
#: XDG_CACHE_HOME): `make demo` may first sync .venv, whose cache is not the pipeline's to check.
UV_CACHE_DIR = os.environ.get("UV_CACHE_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "uv")
)


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "DAGSTER_"))}
    return {
        **env,
        "KIS_DATA_ROOT": str(tmp_path / "data"),
        "KIS_CAPTURE_DAYS": WEEKDAY[(today_in_seoul() - date(2024, 1, 1)).days % 7],
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "UV_CACHE_DIR": UV_CACHE_DIR,
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


@pytest.mark.parametrize("how", ["make demo", "python -m pipelines.commands.demo"])
def test_a_demo_run_leaves_only_owner_only_files(tmp_path: Path, how: str) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    shutil.copyfile(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    (home / "dagster.yaml").chmod(0o644)
    env = demo_env(tmp_path)
    if how == "make demo":
        command = ["make", "--no-print-directory", "demo", f"DAGSTER_HOME={home}"]
    else:  # as the Dockerfile leaves DAGSTER_HOME: private, the code does the rest
        home.chmod(0o700)
        (home / "dagster.yaml").chmod(0o600)
        command = [sys.executable, "-m", "pipelines.commands.demo"]
        env["DAGSTER_HOME"] = str(home)
    demo = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, umask=0o022
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]

    data, cache = tmp_path / "data", tmp_path / "cache"
    written = {
        "raw": list(data.glob("raw/CTRP6548R/snapshot_date=*/*/*.json")),
        "parquet": list(data.glob("parquet/*/snapshot_date=*/data.parquet")),
        "report": list(data.glob("reports/portfolio-*.html")),
        "warehouse": [data / "warehouse.duckdb"],
        "locks": list(data.glob(".locks/*.lock")),
        "token": list(cache.glob("kis-balance-history/tokens/*.json")),
        "runs": list(home.glob("history/runs.db")),
        "event logs": list(home.glob("history/runs/*.db")),
        "compute logs": list(home.glob("storage/*/compute_logs/*")),
    }
    assert {what: bool(paths) for what, paths in written.items()} == dict.fromkeys(written, True)
    assert not_owner_only(data, home, cache) == []
