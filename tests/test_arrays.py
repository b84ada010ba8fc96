"""arrays: Arrow arrays from buffers equal pyarrow's own conversion, and a day's run never
imports pandas."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.lake import arrays

REPO = Path(__file__).resolve().parents[1]


@given(st.lists(st.text()))
def test_strings_equal_pyarrows_conversion(values: list[str]) -> None:
    built = arrays.strings(values)
    built.validate(full=True)
    assert built.equals(pa.array(values, pa.string()))


def test_strings_refuse_anything_but_str() -> None:
    for bad in (["1", None], ["1", 2], [b"1"]):
        with pytest.raises(TypeError):
            arrays.strings(bad)  # type: ignore[arg-type]


@given(st.lists(st.integers(-(2**15), 2**15 - 1)))
def test_int16s_equal_pyarrows_conversion(values: list[int]) -> None:
    assert arrays.int16s(values).equals(pa.array(values, pa.int16()))


def test_int16s_refuse_overflow() -> None:
    with pytest.raises(OverflowError):
        arrays.int16s([2**15])


@given(st.lists(st.booleans()))
def test_bools_equal_pyarrows_conversion(values: list[bool]) -> None:
    assert arrays.bools(values).equals(pa.array(values, pa.bool_()))


@given(
    st.lists(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=9))]),
        )
    )
)
def test_timestamps_equal_pyarrows_conversion(values: list[datetime]) -> None:
    built = arrays.timestamps(values)
    assert built.type == pa.timestamp("us", tz="UTC")
    assert built.equals(pa.array(values, pa.timestamp("us", tz="UTC")))


def test_timestamps_refuse_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        arrays.timestamps([datetime(2024, 5, 2, 9, 0)])


@given(st.lists(st.dates(min_value=date(1900, 1, 1))))
def test_dates_equal_pyarrows_conversion(values: list[date]) -> None:
    assert arrays.dates(values).equals(pa.array(values, pa.date32()))


def test_a_days_tables_warehouse_and_report_never_import_pandas(tmp_path: Path) -> None:
    """pandas costs 0.65 s of a one-day run; every step of it works without importing it."""
    script = textwrap.dedent(
        """
        import sys
        from datetime import UTC, date, datetime
        from pathlib import Path

        import duckdb

        from pipelines.tidy import checks, flatten
        from pipelines.warehouse import warehouse
        from pipelines.lake.compaction import CompactedMonths
        from pipelines.ingest.landing import Snapshot
        from pipelines.lake.tables import ParquetTables
        from pipelines.warehouse.targets import Target
        from pipelines.kis.protocol import Account
        from pipelines.simulator.portfolio import balance_body
        from pipelines.reporting import day_summary, report

        root = Path(sys.argv[1])
        days = [date(2024, 4, 30), date(2024, 5, 2)]
        for day in days:
            snaps = []
            for account in (Account.parse("12345678-01"), Account.parse("12345678-21")):
                body = balance_body(account, day)
                at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
                snaps.append(Snapshot(account, day, at, body["output1"], body["output2"], root))
            tables = {
                "asset_categories": flatten.asset_categories(snaps),
                "account_summary": flatten.account_summary(snaps),
            }
            assert all(o.passed for o in checks.run(snaps, tables)), "checks failed"
            for name, table in tables.items():
                ParquetTables(root).write(name, day, table)
        assert CompactedMonths(root).refresh(date(2024, 5, 3)), "April not compacted"
        from decimal import Decimal
        path = warehouse.build(root, [Target("equity", Decimal(60), Decimal(5))])
        with duckdb.connect(str(path), read_only=True) as con:
            assert day_summary.summarize(con, days[-1]).accounts == 2
            report.write(con, days[-1], root)
            report.render_main_chart_svg(con, days[-1])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "pandas")
        assert not loaded, loaded
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
