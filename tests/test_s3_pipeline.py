"""The whole pipeline through Dagster with KIS_DATA_ROOT=s3://… on a loopback S3 server (moto),
against the same days on a local root: same files, same answers, exact to the last decimal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import pipelines.settings
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding, read_snapshot
from pipelines.kis.client import BalanceResponse, Page
from pipelines.lake.compaction import CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.settings import Settings
from pipelines.simulator import server as simulator_module
from pipelines.simulator.portfolio import balance_body
from pipelines.storage.roots import ObjectStorage, open_root
from pipelines.warehouse import warehouse
from tests import objectstore
from tests.runs import failure_text, kill_while_writing, materialize, two_runs_at_once

REPO = Path(__file__).resolve().parent.parent
#: Views compared between the roots: every column but fetched_at (when the simulator answered).
COMPARED_VIEWS = (
    "asset_categories",
    "account_summary",
    "latest_allocation",
    "net_asset_history",
    "allocation_history",
    "pnl_by_category",
    "consolidated_allocation",
    "consolidated_net_assets",
    "net_assets_monthly",
    "snapshot_calendar",
)


def closed_month_days(today: date) -> list[date]:
    """The last two days of the month before today's: a closed month, so it is compacted."""
    last = today.replace(day=1) - timedelta(days=1)
    return [last - timedelta(days=1), last]


@dataclass
class Root:
    settings: Settings
    days: list[date]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with warehouse.connect(self.settings.data_root, self.settings.warehouse) as con:
            return con.sql(sql).fetchall()

    def view(self, name: str) -> list[tuple[Any, ...]]:
        with warehouse.connect(self.settings.data_root, self.settings.warehouse) as con:
            columns = [
                column
                for (column,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                    "ORDER BY column_index",
                    [name],
                ).fetchall()
                if column != "fetched_at"
            ]
            return con.sql(f"SELECT {', '.join(columns)} FROM {name} ORDER BY ALL").fetchall()


def run_days(environ: dict[str, str], today: date) -> Settings:
    """A range run over the closed month's two days, then today's partition, in `environ`."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("KIS_", "AWS_")):
                patch.delenv(name)
        for name, value in environ.items():
            patch.setenv(name, value)
        for days in (closed_month_days(today), [today]):
            result = materialize(days)
            assert result.success, failure_text(result)
        return Settings.from_env()


@pytest.fixture(scope="module")
def roots(
    s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Root, Root]]:
    """The same days materialized on a local root and on an s3:// root."""
    tmp = tmp_path_factory.mktemp("roots")
    today = today_in_seoul()
    days = [*closed_month_days(today), today]
    common = {"XDG_CACHE_HOME": str(tmp / "cache"), "XDG_DATA_HOME": str(tmp / "share")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipelines.settings, "ENV_FILE", tmp / "no.env")
        patch.setattr(simulator_module, "_embedded", None)
        try:
            local = run_days({**common, "KIS_DATA_ROOT": str(tmp / "local")}, today)
            bucket = objectstore.new_bucket(s3_endpoint)
            s3 = run_days(
                {
                    **common,
                    **objectstore.FAKE_CREDENTIALS,
                    "AWS_ENDPOINT_URL": s3_endpoint,
                    "KIS_DATA_ROOT": f"s3://{bucket}/history",
                    "KIS_WAREHOUSE": str(tmp / "s3-warehouse" / "warehouse.duckdb"),
                },
                today,
            )
        finally:
            if simulator_module._embedded is not None:
                simulator_module._embedded.stop()
    yield Root(local, days), Root(s3, days)


def layout(keys: set[str]) -> list[str]:
    """Keys with each raw file's name (the time it was fetched) left out."""
    return sorted(
        key.rpartition("/")[0] + "/<fetched_at>.json" if key.startswith("raw/") else key
        for key in keys
    )


def bucket_and_prefix(root: Root) -> tuple[str, str]:
    url = urlsplit(str(root.settings.data_root))
    return url.netloc, url.path.strip("/")


@pytest.mark.parametrize("view", COMPARED_VIEWS)
def test_the_views_answer_exactly_as_on_a_local_root(roots: tuple[Root, Root], view: str) -> None:
    local, s3 = roots
    expected = local.view(view)
    assert expected, f"{view} is empty on the local root"
    assert s3.view(view) == expected


def test_amounts_are_exact_decimals_from_the_bucket(roots: tuple[Root, Root]) -> None:
    local, s3 = roots
    sql = (
        "SELECT snapshot_date, account_id, net_assets, net_assets_change FROM net_asset_history "
        "ORDER BY ALL"
    )
    rows = s3.query(sql)
    assert rows == local.query(sql)
    assert {day for day, *_ in rows} == set(s3.days)
    assert all(isinstance(net, Decimal) for _, _, net, _ in rows)
    types = s3.query("SELECT DISTINCT typeof(net_assets) FROM net_asset_history")
    assert types == [("DECIMAL(38,8)",)]


def test_the_bucket_holds_the_local_layout_and_nothing_stays_local(
    roots: tuple[Root, Root], s3_endpoint: str
) -> None:
    local, s3 = roots
    bucket, prefix = bucket_and_prefix(s3)
    in_bucket = {key.removeprefix(f"{prefix}/") for key in objectstore.keys(s3_endpoint, bucket)}
    local_root = Path(str(local.settings.data_root))
    on_disk = {
        path.relative_to(local_root).as_posix()
        for path in local_root.rglob("*")
        if path.is_file() and ".locks" not in path.parts
    }
    assert layout(in_bucket) == layout(on_disk - {warehouse.FILE_NAME})
    month = closed_month_days(s3.days[-1])[0]
    for table in ("asset_categories", "account_summary"):
        assert f"compacted/{table}/{month:%Y-%m}.parquet" in in_bucket
    assert sum(key.startswith("raw/CTRP6548R/") for key in in_bucket) == 2 * len(s3.days)
    assert "raw/provenance.json" in in_bucket  # the root's kind, recorded by its first run
    assert {key for key in in_bucket if key.startswith("reports/")} == {
        f"reports/portfolio-{day}.html" for day in s3.days
    }
    # on this machine: the warehouse where KIS_WAREHOUSE says, and lock files
    assert s3.settings.warehouse.is_file()
    storage = open_root(s3.settings.data_root)
    assert isinstance(storage, ObjectStorage)
    assert sorted(p.name for p in storage.local_dir.rglob("*") if p.is_file()) == sorted(
        ["compaction.lock"] + [f"tidy-{day}.lock" for day in s3.days]
    )


def test_views_read_compacted_months_and_daily_files_from_the_bucket(
    roots: tuple[Root, Root],
) -> None:
    _, s3 = roots
    [(sql,)] = s3.query("SELECT sql FROM duckdb_views() WHERE view_name = 'account_summary'")
    root = str(s3.settings.data_root)
    month = closed_month_days(s3.days[-1])[0]
    assert f"'{root}/compacted/account_summary/{month:%Y-%m}.parquet'" in sql
    assert f"'{root}/parquet/account_summary/snapshot_date={s3.days[-1]:%Y-%m}-[0-3][0-9]" in sql
    assert "/tmp" not in sql


def test_the_report_lands_in_the_bucket(roots: tuple[Root, Root]) -> None:
    local, s3 = roots
    today = s3.days[-1]
    page = (s3.settings.data_root / "reports" / f"portfolio-{today}.html").read_text()
    local_page = (
        Path(str(local.settings.data_root)) / "reports" / f"portfolio-{today}.html"
    ).read_text()
    assert page.lower().startswith("<!doctype html>")
    assert page == local_page


def test_a_second_landing_of_the_same_name_is_refused(roots: tuple[Root, Root]) -> None:
    _, s3 = roots
    landing = RawLanding(s3.settings.data_root)
    [first, *_] = landing.latest_files(s3.days[0])
    before = first.read_bytes()
    landed = read_snapshot(first)
    other_day = balance_body(landed.account, s3.days[-1])
    page = Page(200, "CTRP6548R", "D", json.dumps(other_day, ensure_ascii=False))
    same_name = BalanceResponse(landed.account, landed.fetched_at, (page,))
    with pytest.raises(FileExistsError, match="never replaced"):
        landing.land(same_name, s3.days[0], source={"env": "sim"})
    assert first.read_bytes() == before
    assert landing.latest_files(s3.days[0])[0] == first


def test_sql_entry_point_opens_the_warehouse_with_s3_access(
    roots: tuple[Root, Root], s3_endpoint: str
) -> None:
    _, s3 = roots
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "AWS_"))},
        **objectstore.FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "KIS_DATA_ROOT": str(s3.settings.data_root),
        "KIS_WAREHOUSE": str(s3.settings.warehouse),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.commands.sql",
            "-c",
            "SELECT count(*) AS snapshots, sum(nass_tot_amt) AS net FROM account_summary",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [(count, net)] = s3.query("SELECT count(*), sum(nass_tot_amt) FROM account_summary")
    assert count == 2 * len(s3.days)
    assert str(count) in done.stdout and f"{net}" in done.stdout
    # the same statements through the shell, from a pipe
    shell = subprocess.run(
        [sys.executable, "-m", "pipelines.commands.sql"],
        cwd=REPO,
        env=env,
        input="SELECT count(DISTINCT snapshot_date)\nAS days FROM account_summary;\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.returncode == 0, shell.stderr
    assert "days" in shell.stdout and str(len(s3.days)) in shell.stdout


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import date
    import pyarrow.parquet as pq
    from pipelines.lake.tables import ParquetTables
    from pipelines.settings import Settings
    tables = ParquetTables(Settings.from_env().data_root)
    day = date.fromisoformat(sys.argv[1])
    table = tables.read("asset_categories", day)
    def slow_write(data, where, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half a file")
            handle.flush()
        print("writing", flush=True)
        time.sleep(60)
    pq.write_table = slow_write
    tables.write("asset_categories", day, table)
    """
)


def test_a_run_killed_mid_write_leaves_the_previous_object(s3_root: str) -> None:
    today = today_in_seoul()
    result = materialize(today)
    assert result.success, failure_text(result)
    settings = Settings.from_env()
    path = ParquetTables(settings.data_root).path("asset_categories", today)
    before = path.read_bytes()
    kill_while_writing(KILLED_WRITER, today.isoformat())
    assert path.read_bytes() == before
    with warehouse.connect(settings.data_root, settings.warehouse) as con:
        assert con.sql("SELECT count(*) FROM asset_categories").fetchone() == (37,)


def test_two_runs_of_one_day_on_one_machine_leave_one_consistent_snapshot(
    s3_root: str, simulator: simulator_module.Simulator
) -> None:
    """On one machine the per-day lock (a local flock) keeps the two runs apart; across
    machines that is Dagster's run concurrency (README, "Data in object storage")."""
    env = {**os.environ, "KIS_ENV": "sim", "KIS_BASE_URL": simulator.base_url}
    today = today_in_seoul().isoformat()
    two_runs_at_once(today, env)
    settings = Settings.from_env()
    with warehouse.connect(settings.data_root, settings.warehouse) as con:
        pairs = con.sql(
            "SELECT DISTINCT c.account_id, c.fetched_at = s.fetched_at FROM asset_categories c "
            "JOIN account_summary s USING (snapshot_date, account_id)"
        ).fetchall()
    assert sorted(pairs) == [("12345678-01", True), ("12345678-21", True)]
    assert len(RawLanding(settings.data_root).all_files(today_in_seoul())) == 4


def test_a_read_that_races_a_rewrite_is_run_again(s3_root: str, tmp_path: Path) -> None:
    """In object storage a reader does not keep the version it opened: a query that meets an
    object replaced meanwhile fails by its ETag (never mixing versions) and is run again."""
    from tests.test_storage import DAY1, PRODUCT21, populate

    settings = Settings.from_env()
    populate(settings.data_root)
    path = warehouse.build(settings.data_root, path=tmp_path / "warehouse.duckdb")
    tables = ParquetTables(settings.data_root)
    attempts: list[int] = []

    def count_twice(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
        attempts.append(len(attempts) + 1)
        before = con.sql("SELECT count(*) FROM account_summary").fetchone()
        if len(attempts) == 1:  # another writer rebuilds DAY1 without one account
            day = tables.read("account_summary", DAY1)
            fewer = day.filter(pc.not_equal(day["account_id"], PRODUCT21.id))
            tables.write("account_summary", DAY1, fewer)
        after = con.sql("SELECT count(*) FROM account_summary").fetchone()
        assert after == before
        return after

    assert warehouse.read(settings.data_root, path, count_twice) == (4,)
    assert attempts == [1, 2]


def test_a_day_rewritten_while_its_month_is_compacted_leaves_the_month_read_by_day(
    s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a local disk, where the fingerprint makes such a file stale: in object storage the
    read fails by its ETag, and the month is compacted by the next run instead."""
    from tests.test_compaction import ACCOUNTS, MAY, TODAY, write_day

    root = Settings.from_env().data_root
    days = [MAY + timedelta(days=n) for n in range(3)]
    for day in days:
        write_day(root, day)
    read = ParquetTables.read
    rewritten: list[date] = []

    def read_while_another_writer_rewrites(self: ParquetTables, table: str, day: date) -> Any:
        if rewritten:
            return read(self, table, day)
        rewritten.append(day)
        with self.storage.open_input(self.key(table, day)) as source:
            write_day(root, day, ACCOUNTS[:1])
            return pq.ParquetFile(source).read()

    monkeypatch.setattr(ParquetTables, "read", read_while_another_writer_rewrites)
    compacted = CompactedMonths(root)
    assert compacted.refresh(TODAY) == [compacted.path("account_summary", MAY)]
    assert rewritten == [days[0]]
    assert compacted.files("asset_categories").daily_months == [MAY]
    assert compacted.refresh(TODAY) == [compacted.path("asset_categories", MAY)]
    assert compacted.files("asset_categories").compacted == [
        compacted.path("asset_categories", MAY)
    ]
