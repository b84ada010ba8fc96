"""`make export`: views to CSV and Parquet, exact decimals in both, as the README shows it."""

from __future__ import annotations

import csv
import shlex
import stat
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.commands import export
from pipelines.kis.protocol import Account
from tests.readme import example
from tests.test_reporting_views import PORTAL, STANDARD, write_days

REPO = Path(__file__).resolve().parent.parent
WHALE = Account.parse("98765432-01")  # 19-digit amounts: beyond what a float holds


@pytest.fixture
def warehouse_file(isolated_env: Path) -> Path:
    plan = {date(2026, 3, 2): (STANDARD, WHALE, PORTAL), date(2026, 3, 3): (STANDARD, WHALE)}
    return write_days(isolated_env, plan, (STANDARD, WHALE, PORTAL))


def view_rows(db: Path, view: str) -> tuple[list[str], list[tuple[object, ...]]]:
    with duckdb.connect(str(db), read_only=True) as con:
        cursor = con.execute(f"SELECT * FROM {view} ORDER BY ALL")
        return [c[0] for c in cursor.description or []], cursor.fetchall()


def test_every_default_view_is_written_exactly_in_both_formats(
    warehouse_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert export.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for view in export.DEFAULT_VIEWS:
        names, expected = view_rows(warehouse_file, view)
        assert f"{view}: {len(expected):,} rows" in printed
        table = pq.read_table(out / f"{view}.parquet")
        assert table.column_names == names
        assert table.to_pylist() == [dict(zip(names, row, strict=True)) for row in expected]
        with (out / f"{view}.csv").open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        assert lines[0] == names and len(lines) == len(expected) + 1
        for field in table.schema:
            if not pa.types.is_decimal(field.type):
                continue
            column = names.index(field.name)
            for line, row in zip(lines[1:], expected, strict=True):
                text, value = line[column], row[column]
                # the exact decimal text, as the view holds it (8 decimals), never a float's
                assert (text == "") == (value is None)
                if value is not None:
                    assert text == format(value, "f") and Decimal(text) == value
        for path in (out / f"{view}.csv", out / f"{view}.parquet"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # a 19-digit amount survives both, and KIS's example's net assets are its whole account
    net = view_rows(warehouse_file, "net_asset_history")[1]
    assert any(len(str(int(r[3]))) >= 19 for r in net)
    assert "1651869889547.00000000" in (out / "net_asset_history.csv").read_text()


def test_an_unknown_view_or_format_is_refused_with_the_choices(
    warehouse_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for argv, says in (
        (["nope", "--out", str(out)], "no view nope in the warehouse; the views are: "),
        (["--format", "xlsx", "--out", str(out)], "unknown format xlsx"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            export.main(argv)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert says in error and "usage: python -m pipelines.commands.export" in error
    assert not out.exists()


def test_without_a_warehouse_it_says_what_to_run(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        export.main([])
    assert "no warehouse at" in capsys.readouterr().err


def test_the_readme_example_runs_as_written(warehouse_file: Path, tmp_path: Path) -> None:
    """Each line of the README's export example, `make export …` run as the Makefile runs it."""
    commands = [line.split("#")[0].strip() for line in example("export").splitlines()]
    assert commands[0] == "make export"
    ran = []
    for command in filter(None, commands):
        argv = shlex.split(command)
        if argv[:2] == ["make", "export"]:
            extra = [a.partition("=")[2] for a in argv[2:] if a.startswith("EXPORT_ARGS=")]
            argv = ["-m", "pipelines.commands.export", *shlex.split(" ".join(extra))]
        else:
            assert argv[:3] == [".venv/bin/python", "-m", "pipelines.commands.export"]
            argv = argv[1:]
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        ran.append(done.stdout)
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == sorted(
        f"{view}.{kind}" for view in export.DEFAULT_VIEWS for kind in ("csv", "parquet")
    )
    assert [p.name for p in (tmp_path / "monthly").iterdir()] == ["net_assets_monthly.csv"]
    assert "usage: python -m pipelines.commands.export" in ran[-1]
