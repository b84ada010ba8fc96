"""A data root copied or moved to another path reads its own files, however it is opened.

A root is built through Dagster, copied, and the original changed and then deleted; every view
and table of the copy answers exactly as the original did before, through each way the project
opens the warehouse (the Python opener, `make sql` and its `duckdb` shell, the notebook frames,
the Dagster `duckdb` resource), and the plain `duckdb` shell of docs/querying.md still opens an
unmoved root from another directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import pytest

from assets.duckdb_resource import WarehouseDuckDB
from pipelines import frames
from pipelines.commands import sql
from pipelines.settings import Settings
from pipelines.warehouse import sources, warehouse
from tests.runs import failure_text, materialize

REPO = Path(__file__).resolve().parent.parent
#: May is a closed month (compacted into one file per table), June is read from its daily files.
DAYS = [date(2024, 5, 30), date(2024, 5, 31), date(2024, 6, 1), date(2024, 6, 2)]
TARGETS = """
[asset_class.equity]
target_pct = 50
tolerance_pct = 10

[asset_class.cash]
target_pct = 50
tolerance_pct = 10
"""

Fingerprints = list[tuple[str, int, int]]


def fingerprint_sql(con: duckdb.DuckDBPyConnection) -> str:
    """One query giving, for every view and table of the warehouse, its row count and an
    order-independent hash of its rows."""
    names = [
        row[0]
        for row in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal UNION ALL "
            "SELECT table_name FROM duckdb_tables() ORDER BY 1"
        ).fetchall()
    ]
    return " UNION ALL ".join(
        f"SELECT '{name}' AS name, count(*) AS n, bit_xor(hash(v)) AS h FROM {name} AS v"
        for name in names
    )


def fingerprints(con: duckdb.DuckDBPyConnection, query: str) -> Fingerprints:
    return sorted((str(n), int(c), int(h)) for n, c, h in con.execute(query).fetchall())


def from_csv(path: Path) -> Fingerprints:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    return sorted((name, int(count), int(hashed)) for name, count, hashed in rows)


def copied_to(query: str, out: Path) -> str:
    return f"COPY ({query}) TO '{out}' (HEADER false)"


@pytest.fixture
def original(isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A root of four days through Dagster (a compacted month and daily files), with targets."""
    targets = tmp_path / "targets.toml"
    targets.write_text(TARGETS)
    monkeypatch.setenv("KIS_TARGETS_FILE", str(targets))
    result = materialize(DAYS)
    assert result.success, failure_text(result)
    assert (isolated_env / "compacted" / "asset_categories" / "2024-05.parquet").is_file()
    return isolated_env


def test_a_copied_root_reads_its_own_files_however_it_is_opened(
    original: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with warehouse.connect(original) as con:
        query = fingerprint_sql(con)
        expected = fingerprints(con, query)
        views = dict(con.execute("SELECT view_name, sql FROM duckdb_views()").fetchall())
    names = {name for name, _, _ in expected}
    assert {*warehouse.view_names(), "allocation_drift", "category_labels"} <= names
    assert all(count > 0 for name, count, _ in expected if name != "missed_captures")
    # no view names the root it was built in: only the macro's fallback does
    assert not [name for name, text in views.items() if str(original) in text]

    # the README's plain shell, from another directory, on a root that did not move
    cli = sql.duckdb_cli()
    assert cli is not None
    plain = tmp_path / "plain.csv"
    subprocess.run(
        [cli, "-readonly", "data/warehouse.duckdb", "-c", copied_to(query, plain)],
        cwd=original.parent,
        check=True,
    )
    assert from_csv(plain) == expected

    copy = tmp_path / "elsewhere" / "copy of data"
    shutil.copytree(original, copy)
    # the original moves on (one more day: different rows in every view), then loses its
    # compacted month and the month's daily files: reading any of it from the copy would show
    monkeypatch.setenv("KIS_DATA_ROOT", str(original))
    result = materialize(date(2024, 6, 3))
    assert result.success, failure_text(result)
    with warehouse.connect(original) as con:
        assert fingerprints(con, query) != expected
    shutil.rmtree(original / "compacted")
    for table in ("asset_categories", "account_summary"):
        for day in original.glob(f"parquet/{table}/snapshot_date=2024-05-*"):
            shutil.rmtree(day)

    monkeypatch.setenv("KIS_DATA_ROOT", str(copy))
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    assert settings.warehouse == copy / "warehouse.duckdb"

    def through_resource() -> Fingerprints:
        resource = WarehouseDuckDB(
            database=str(settings.warehouse),
            data_root=str(settings.data_root),
            connection_config={"access_mode": "READ_ONLY"},
        )
        with resource.get_connection() as con:
            return fingerprints(con, query)

    def through_make_sql_shell() -> Fingerprints:
        out = tmp_path / "shell.csv"
        command = sql.cli_command(cli, settings)
        subprocess.run([*command, "-c", copied_to(query, out)], check=True)
        return from_csv(out)

    def through_make_sql_command() -> Fingerprints:
        out = tmp_path / "command.csv"
        subprocess.run(
            [sys.executable, "-m", "pipelines.commands.sql", "-c", copied_to(query, out)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
        )
        return from_csv(out)

    def through_read() -> Fingerprints:
        return warehouse.read(copy, None, lambda con: fingerprints(con, query))

    def through_sql_connect() -> Fingerprints:
        with sql.connect() as con:
            return fingerprints(con, query)

    def through_frames() -> Fingerprints:
        table = frames.query(query, data_root=copy)
        rows = zip(table["name"].tolist(), table["n"].tolist(), table["h"].tolist(), strict=True)
        return sorted((str(name), int(count), int(hashed)) for name, count, hashed in rows)

    ways: dict[str, Callable[[], Fingerprints]] = {
        "warehouse.read": through_read,
        "commands.sql.connect": through_sql_connect,
        "make sql -c": through_make_sql_command,
        "make sql (duckdb shell)": through_make_sql_shell,
        "frames.query": through_frames,
        "duckdb resource": through_resource,
    }
    answers = {way: read() for way, read in ways.items()}
    assert {way: answer == expected for way, answer in answers.items()} == dict.fromkeys(ways, True)

    # and with the original gone altogether
    shutil.rmtree(original)
    assert through_read() == expected
    assert through_make_sql_shell() == expected


def test_an_s3_root_keeps_its_urls_in_the_views(s3_root: str) -> None:
    """The bucket is the identity of an object-storage root: its views hold s3:// URLs."""
    result = materialize(DAYS[-2:])
    assert result.success, failure_text(result)
    settings = Settings.from_env()
    assert sources.root_statement(settings.data_root) is None
    with warehouse.connect(settings.data_root, settings.warehouse) as con:
        [(text,)] = con.execute(
            "SELECT sql FROM duckdb_views() WHERE view_name = 'account_summary'"
        ).fetchall()
        assert f"'{s3_root}/compacted/account_summary/" in text
        assert sources.ROOT_MACRO not in text
        assert con.execute("SELECT count(*) FROM account_summary").fetchone() == (4,)
