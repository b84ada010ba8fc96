"""The `dg` CLI from the repository root, as the README and the Makefile use it.

`dg launch` materializes today's partition in simulator mode into a temporary data root and
Dagster instance; `dg check defs` and `dg list defs` load the project as `[tool.dg]` in
pyproject.toml configures it. Each runs as a user would run it, in a process of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import duckdb
import yaml

from pipelines.ingest.fetch import today_in_seoul
from tests.runs import DEVELOPER_SETTINGS

REPO = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"


def dg(tmp_path: Path, *args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`dg` from the repository root; `path` is put first on PYTHONPATH (where my_assets.py is)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        **dict.fromkeys(DEVELOPER_SETTINGS, ""),
        "KIS_ENV": "sim",
        "DAGSTER_HOME": str(home),
        # every warning shown, once per place, wherever it comes from
        "PYTHONWARNINGS": "default",
        **({"PYTHONPATH": str(path)} if path else {}),
    }
    return subprocess.run(
        [str(DG), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def warnings_from_our_code(stderr: str) -> list[str]:
    """Warning lines (`path:line: SomethingWarning: …`) whose path is in pipelines/ or assets/."""
    ours = tuple(str(REPO / package) for package in ("pipelines", "assets"))
    return [
        line
        for line in stderr.splitlines()
        if re.match(r"^\S+\.py:\d+: \w+Warning: ", line) and line.startswith(ours)
    ]


def test_dg_launch_materializes_today_without_a_warning_of_ours(
    isolated_env: Path, tmp_path: Path
) -> None:
    today = today_in_seoul()
    done = dg(tmp_path, "launch", "--assets", "*", "--partition", today.isoformat())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    for warning in ("SupersessionWarning", "BetaWarning", "project_and_activated_venv"):
        assert warning not in done.stderr + done.stdout, warning
    assert warnings_from_our_code(done.stderr) == []
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM account_summary WHERE snapshot_date = ?", [today]
        ).fetchone() == (2,)
    assert (isolated_env / "reports" / f"portfolio-{today}.html").is_file()


def test_dg_check_defs_and_list_defs_load_the_project(isolated_env: Path, tmp_path: Path) -> None:
    checked = dg(tmp_path, "check", "defs")
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    assert warnings_from_our_code(checked.stderr) == []

    listed = dg(tmp_path, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    assert {a["asset_key"] for a in defs["assets"]} == {
        "kis_balance_raw",
        "asset_categories",
        "account_summary",
        "warehouse_views",
        "portfolio_report",
    }
    assert {"kis", "parquet_tables", "duckdb"} <= {r["name"] for r in defs["resources"]}
    assert {j["name"] for j in defs["jobs"]} == {
        "daily_balance",
        "capture_fetch",
        "build_day",
        "repair_history",
    }
    assert defs["schedules"] == []  # the capture sensor fetches, not a schedule
    assert [s["name"] for s in defs["sensors"]] == ["balance_capture"]


def test_one_code_location_name_under_dg_the_service_and_the_deployments() -> None:
    name = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"][
        "code_location_name"
    ]
    for workspace in ("workspace.yaml", "deploy/workspace.yaml"):
        [location] = yaml.safe_load((REPO / workspace).read_text())["load_from"]
        [(_, where)] = location.items()
        assert where["location_name"] == name, workspace


def test_your_own_assets_from_my_assets_py_are_registered_without_a_warning(
    isolated_env: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "root"
    mine.mkdir()
    (mine / "my_assets.py").write_text((REPO / "examples" / "my_assets.py").read_text())
    listed = dg(tmp_path, "list", "defs", "--json", path=mine)
    assert listed.returncode == 0, listed.stderr[-3000:]
    keys = {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    assert {"market_value_by_account", "net_assets_to_date", "kis_balance_raw"} <= keys
    assert "BackfillPolicy" not in listed.stderr + listed.stdout
    assert warnings_from_our_code(listed.stderr) == []
