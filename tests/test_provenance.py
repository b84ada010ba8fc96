"""Simulated and real answers never share a data root: the demo and simulator mode default to
data/demo/, real mode to data/; a run refuses a root of the other kind; the views and the report
say when the numbers are simulated. Against the simulator over real HTTP, through Dagster."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

import pipelines.settings
from pipelines.commands import demo
from pipelines.ingest import provenance
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.settings import Settings
from pipelines.simulator.server import Simulator
from tests.runs import failure, failure_text, materialize

REAL_ACCOUNTS = ["55555555-01", "55555555-21"]
SIM_ACCOUNTS = ["12345678-01", "12345678-21"]
APP_SECRET = "FAKE-REAL-SECRET-not-for-any-file-0123456789"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout of our own: the default data roots (data/, data/demo/) and kis.env under it,
    KIS_DATA_ROOT unset, and a Dagster instance in DAGSTER_HOME as `make` sets it."""
    root = tmp_path / "repo"
    (root / "home").mkdir(parents=True)
    monkeypatch.setattr(pipelines.settings, "REPO_ROOT", root)
    monkeypatch.setattr(pipelines.settings, "ENV_FILE", root / "kis.env")
    monkeypatch.delenv("KIS_DATA_ROOT")
    monkeypatch.setenv("DAGSTER_HOME", str(root / "home"))
    # the demo sets the history's first day for the assets it imports: restored afterwards
    monkeypatch.setenv("KIS_HISTORY_START", "2023-01-01")
    monkeypatch.setattr(demo, "HISTORY_DAYS", 5)
    return root


def real_env_file(repo: Path, simulator: Simulator) -> None:
    """A user's real settings in kis.env, with the simulator standing in for KIS's server."""
    (repo / "kis.env").write_text(
        f"KIS_ENV=real\nKIS_BASE_URL={simulator.base_url}\nKIS_APP_KEY=FAKE-REAL-APP-KEY\n"
        f"KIS_APP_SECRET={APP_SECRET}\nKIS_ACCOUNTS={','.join(REAL_ACCOUNTS)}\n"
    )


def run_demo(capsys: pytest.CaptureFixture[str]) -> str:
    assert demo.main() == 0, capsys.readouterr().out[-3000:]
    return capsys.readouterr().out


def warehouse_rows(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def quiet_instance() -> Iterator[None]:
    yield
    dg.DagsterInstance.get().dispose()


def test_demo_first_then_real_settings_keep_only_real_accounts_in_views_and_report(
    repo: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str], quiet_instance: None
) -> None:
    out = run_demo(capsys)
    demo_root, real_root = repo / "data" / "demo", repo / "data"
    assert f"Data root:  {demo_root}" in out
    assert (demo_root / "raw" / "CTRP6548R").is_dir() and not (real_root / "raw").exists()
    # every partition the demo built has its views and report: none shows "Missing" in the UI
    instance = dg.DagsterInstance.get()
    built = {
        name: instance.get_materialized_partitions(dg.AssetKey(name))
        for name in ("kis_balance_raw", "warehouse_views", "portfolio_report")
    }
    assert len(built["kis_balance_raw"]) == 6  # every day is a capture day here
    assert built["warehouse_views"] == built["portfolio_report"] == built["kis_balance_raw"]

    real_env_file(repo, simulator)
    today = today_in_seoul()
    result = materialize(today)
    assert result.success, failure_text(result)

    warehouse = real_root / "warehouse.duckdb"
    assert warehouse_rows(
        warehouse, "SELECT DISTINCT account_id, is_simulated FROM net_asset_history ORDER BY 1"
    ) == [(account, False) for account in REAL_ACCOUNTS]
    assert warehouse_rows(
        warehouse, "SELECT accounts, accounts_expected, is_simulated FROM consolidated_net_assets"
    ) == [(2, 2, False)]
    page = (real_root / "reports" / f"portfolio-{today}.html").read_text()
    assert all(account in page for account in REAL_ACCOUNTS)
    assert not any(account in page for account in SIM_ACCOUNTS)
    assert 'id="simulated-data"' not in page
    # the demo's own warehouse and report say they are simulated
    assert warehouse_rows(
        demo_root / "warehouse.duckdb", "SELECT DISTINCT is_simulated FROM net_asset_history"
    ) == [(True,)]
    demo_page = max((demo_root / "reports").glob("portfolio-*.html")).read_text()
    assert 'id="simulated-data"' in demo_page and "Simulated data" in demo_page
    for path in real_root.rglob("*.json"):
        assert APP_SECRET not in path.read_text()


def test_real_first_then_the_demo_leaves_the_real_root_untouched(
    repo: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str], quiet_instance: None
) -> None:
    real_env_file(repo, simulator)
    result = materialize(today_in_seoul())
    assert result.success, failure_text(result)
    real_root = repo / "data"
    assert json.loads((real_root / "raw" / "provenance.json").read_text())["kind"] == "real"
    before = hashes(real_root)

    out = run_demo(capsys)  # with the real settings still in kis.env
    assert "Your settings select real mode" in out
    after = hashes(real_root)
    demo_files = {name for name in after if name.startswith("demo/")}
    assert demo_files and {k: v for k, v in after.items() if k not in demo_files} == before


def test_a_run_refuses_a_root_of_the_other_kind_in_one_line(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, simulator: Simulator
) -> None:
    today = today_in_seoul()
    assert materialize(today).success  # simulator mode lands in KIS_DATA_ROOT
    files = hashes(isolated_env)
    monkeypatch.setenv("KIS_ENV", "real")
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KIS_APP_KEY", "FAKE-REAL-APP-KEY")
    monkeypatch.setenv("KIS_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("KIS_ACCOUNTS", REAL_ACCOUNTS[0])

    result = materialize(today)
    assert not result.success
    description, _ = failure(result)
    assert "\n" not in description
    assert f"The data root {isolated_env} holds simulated answers" in description
    assert "12345678-01" not in description  # the root's record was enough: nothing read
    assert "set KIS_DATA_ROOT to another folder" in description
    assert simulator.requests["token_issued"] == simulator.requests["balance"] == 0
    assert hashes(isolated_env) == files


def land_answer(root: Path, account: str, envelope_source: dict | None) -> None:
    day = root / "raw" / "CTRP6548R" / "snapshot_date=2026-11-02" / account
    day.mkdir(parents=True)
    envelope = {"format": "kis-balance-raw/1", "account_id": account, "pages": []}
    if envelope_source is not None:
        envelope["source"] = envelope_source
    (day / "20261102T093000000000Z.json").write_text(json.dumps(envelope))


def test_a_root_written_before_its_record_is_judged_by_its_answers(isolated_env: Path) -> None:
    land_answer(isolated_env, "12345678-01", {"env": "sim", "simulated": True})
    # a file without source (by hand, another tool): the simulator's accounts are simulated
    land_answer(isolated_env, "12345678-21", None)
    found = provenance.survey(isolated_env)
    assert (found.kind, found.recorded) == ("simulated", False)
    assert not (isolated_env / provenance.RECORD_KEY).exists()  # looking never writes

    land_answer(isolated_env, "55555555-01", {"env": "real", "server": "https://kis"})
    mixed = provenance.survey(isolated_env)
    assert mixed.kind == "mixed" and mixed.is_simulated is None
    assert mixed.accounts == {"real": ("55555555-01",), "simulated": tuple(SIM_ACCOUNTS)}
    for simulated in (True, False):
        with pytest.raises(provenance.MixedRootError) as refused:
            provenance.claim(isolated_env, simulated=simulated, server="x")
        assert "holds mixed answers (real account(s) 55555555-01; simulated account(s) " in str(
            refused.value
        )
        assert "make repair" in str(refused.value)
    assert not (isolated_env / provenance.RECORD_KEY).exists()


def test_an_empty_root_takes_the_kind_of_its_first_run(isolated_env: Path) -> None:
    assert provenance.survey(isolated_env).kind == "empty"
    provenance.claim(isolated_env, simulated=False, server="https://kis")
    assert provenance.survey(isolated_env).kind == "real"
    with pytest.raises(provenance.MixedRootError, match="holds real answers; a simulator-mode"):
        provenance.claim(isolated_env, simulated=True, server="embedded")
    assert RawLanding(isolated_env).children() == []


@pytest.mark.parametrize(
    ("environ", "default"),
    [
        ({}, "data/demo"),
        ({"KIS_ENV": "sim"}, "data/demo"),
        ({"KIS_APP_KEY": "k", "KIS_APP_SECRET": "s", "KIS_ACCOUNTS": "12345678-01"}, "data"),
    ],
)
def test_the_default_data_root_follows_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], default: str
) -> None:
    monkeypatch.setattr(pipelines.settings, "REPO_ROOT", tmp_path)
    settings = Settings.from_env(environ, env_file=tmp_path / "none.env")
    assert settings.data_root == tmp_path / default
    assert settings.warehouse == tmp_path / default / "warehouse.duckdb"
    explicit = Settings.from_env(
        {**environ, "KIS_DATA_ROOT": str(tmp_path / "mine")}, env_file=tmp_path / "none.env"
    )
    assert explicit.data_root == tmp_path / "mine"
