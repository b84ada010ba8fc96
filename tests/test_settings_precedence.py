"""The process environment wins over the settings file under Dagster's own CLIs, and invalid
settings stop `dg check defs` and `make run` with one line: each run as a user runs it, in a
process of its own, in simulator mode (no credentials, nothing beyond loopback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import duckdb

from pipelines.ingest.fetch import today_in_seoul

REPO = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"
FILE_ACCOUNTS = "11110000-01,11110000-21"
ENV_ACCOUNTS = "22220000-01"


def closed_port() -> int:
    """A loopback port nothing listens on: a run that went there would fail at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(
    tmp_path: Path, command: list[str], settings_file: dict[str, str], environ: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`command` from the repository root with a settings file of its own (KIS_SETTINGS_FILE)
    holding `settings_file`, and `environ` in its process environment."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    path = tmp_path / "kis.env"
    path.write_text("".join(f"{name}={value}\n" for name, value in settings_file.items()))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KIS_")},
        **{name: os.environ[name] for name in ("KIS_DATA_ROOT", "KIS_CAPTURE_DAYS")},
        "KIS_HISTORY_START": os.environ["KIS_HISTORY_START"],
        "KIS_SETTINGS_FILE": str(path),
        "DAGSTER_HOME": str(home),
        **environ,
    }
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def landed_accounts(data_root: Path) -> set[str]:
    with duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT account_id FROM account_summary WHERE snapshot_date = ?",
            [today_in_seoul()],
        ).fetchall()
    return {account for (account,) in rows}


def test_dg_launch_fetches_the_environments_accounts_and_mode_over_the_file(
    isolated_env: Path, tmp_path: Path
) -> None:
    """The file says real mode, a server and two accounts; the environment says simulator
    mode, the embedded simulator (an empty KIS_BASE_URL is set, and wins) and one account."""
    file = {
        "KIS_ENV": "real",
        "KIS_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        "KIS_APP_KEY": "file-app-key",
        "KIS_APP_SECRET": "file-app-secret",
        "KIS_ACCOUNTS": FILE_ACCOUNTS,
    }
    environ = {"KIS_ENV": "sim", "KIS_BASE_URL": "", "KIS_ACCOUNTS": ENV_ACCOUNTS}
    today = today_in_seoul().isoformat()
    command = [str(DG), "launch", "--assets", "*", "--partition", today]
    done = run(tmp_path, command, file, environ)
    assert done.returncode == 0, done.stderr[-3000:]
    assert landed_accounts(isolated_env) == {ENV_ACCOUNTS}
    raw = list((isolated_env / "raw" / "CTRP6548R").rglob("*.json"))
    assert raw and all(json.loads(path.read_text())["source"]["simulated"] for path in raw)

    # and the file's values where the environment sets nothing
    for name in ("KIS_ENV", "KIS_BASE_URL", "KIS_ACCOUNTS"):
        environ.pop(name)
    environ.update({"KIS_ENV": "sim", "KIS_BASE_URL": ""})
    again = run(tmp_path, command, file, environ)
    assert again.returncode == 0, again.stderr[-3000:]
    assert landed_accounts(isolated_env) == {ENV_ACCOUNTS, *FILE_ACCOUNTS.split(",")}


def test_invalid_settings_fail_dg_check_defs_with_their_line(
    isolated_env: Path, tmp_path: Path
) -> None:
    line = "KIS_ENV='reall': expected one of sim, real"
    checked = run(tmp_path, [str(DG), "check", "defs"], {}, {"KIS_ENV": "reall"})
    assert checked.returncode != 0
    output = checked.stdout + checked.stderr
    assert line in output
    assert "All definitions loaded successfully" not in output
    # the same refusal when the bad value is in the file, and never the secret
    secret = "a-secret-never-shown-0123456789"
    from_file = run(
        tmp_path,
        [str(DG), "check", "defs"],
        {"KIS_ENV": "real", "KIS_APP_SECRET": secret, "KIS_RATE_LIMIT": "fast"},
        {},
    )
    assert from_file.returncode != 0
    output = from_file.stdout + from_file.stderr
    assert "KIS_RATE_LIMIT='fast': expected requests per second" in output
    assert secret not in output


#: `make run` without its setup step (.venv is this one; a sync would print lines of its own)
MAKE_RUN = ["make", "-s", "-o", ".venv/.synced", "run"]


def test_invalid_settings_stop_make_run_in_one_line(isolated_env: Path, tmp_path: Path) -> None:
    done = run(tmp_path, MAKE_RUN, {}, {"KIS_ENV": "reall"})
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if not line.startswith("make")]
    assert lines == ["settings: KIS_ENV='reall': expected one of sim, real"], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (isolated_env / "raw").exists()  # nothing was fetched

    verbose = run(tmp_path, [*MAKE_RUN, "VERBOSE=1"], {}, {"KIS_ENV": "reall"})
    assert "Traceback" in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-2:][0].startswith("settings: KIS_ENV='reall'")


def test_dagster_asset_materialize_fetches_the_environments_accounts_over_the_file(
    isolated_env: Path, tmp_path: Path
) -> None:
    """`dagster` as the tests and deployments run it, not only `dg`."""
    dagster = str(Path(sys.executable).parent / "dagster")
    today = today_in_seoul().isoformat()
    command = [dagster, "asset", "materialize", "-m", "pipelines.definitions", "--select", "*"]
    done = run(
        tmp_path,
        [*command, "--partition", today],
        {"KIS_ENV": "sim", "KIS_ACCOUNTS": FILE_ACCOUNTS},
        {"KIS_ACCOUNTS": ENV_ACCOUNTS},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert landed_accounts(isolated_env) == {ENV_ACCOUNTS}
