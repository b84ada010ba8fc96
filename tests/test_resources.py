"""The Dagster seams: the `kis` resource set up once per run, the IO manager and the `duckdb`
resource on its data root; the resource, not the fetch path, starts the embedded simulator."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from assets.partitions import daily_partitions
from assets.resources import KisResource, kis_server
from pipelines.definitions import resources
from pipelines.ingest.fetch import EMBEDDED_SERVER_ID, NoServerError, fetch_and_land, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.settings import Settings
from pipelines.simulator import server as simulator_module
from pipelines.simulator.server import Simulator
from tests.runs import ASSETS


def test_a_run_sets_kis_up_once_and_its_own_assets_read_the_same_data_root(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setups: list[KisResource] = []
    setup = KisResource.setup_for_execution

    def counted(self: KisResource, context: dg.InitResourceContext) -> None:
        setups.append(self)
        setup(self, context)

    monkeypatch.setattr(KisResource, "setup_for_execution", counted)

    @dg.asset(
        deps=["portfolio_report"],
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def uses_the_views(duckdb: DuckDBResource) -> int:
        with duckdb.get_connection() as con:
            row = con.sql("SELECT count(*) FROM account_summary").fetchone()
        return int(row[0]) if row else 0

    result = dg.materialize(
        [*ASSETS, uses_the_views],
        partition_key=today_in_seoul().isoformat(),
        resources=resources(KisResource(data_root=str(isolated_env))),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert result.output_for_node("uses_the_views") == 2  # the views of the run's data root
    assert len(setups) == 1


def test_the_resource_starts_the_embedded_simulator_the_fetch_path_does_not(
    isolated_env: Path,
) -> None:
    settings = Settings.from_env()
    assert settings.base_url is None  # simulator mode, no server named
    with pytest.raises(NoServerError, match="kis resource"):
        fetch_and_land(settings, RawLanding(isolated_env), today_in_seoul())
    assert not (isolated_env / "raw").exists()
    server = kis_server(settings)
    assert server.server_id == EMBEDDED_SERVER_ID
    assert server.base_url.startswith("http://127.0.0.1:")
    report = KisResource().fetch_and_land(RawLanding(isolated_env), today_in_seoul())
    assert len(report.landed) == 2 and not report.failures


def test_a_named_server_is_used_as_it_is(simulator: Simulator) -> None:
    settings = Settings.from_env({"KIS_ENV": "sim", "KIS_BASE_URL": simulator.base_url})
    server = kis_server(settings)
    assert (server.base_url, server.server_id) == (simulator.base_url, simulator.base_url)
    assert simulator_module._embedded is None  # no embedded simulator started beside it
