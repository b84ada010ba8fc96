"""The DuckDB warehouse: views over the Parquet tables, rebuilt whole and swapped in atomically.

The file holds only views (of the Parquet files: compacted months, daily files for the rest), so
rebuilding it never touches data. It is always a local file (KIS_WAREHOUSE); `connect` opens it
with what its views need to read the data root (sources.py: how the views name the files).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import duckdb

from pipelines.ingest import provenance
from pipelines.ingest.capture import TIME_ZONE, CaptureCalendar
from pipelines.kis import layouts
from pipelines.lake import schema
from pipelines.lake.compaction import CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.storage.base import WAREHOUSE_FILE
from pipelines.storage.files import atomic_path, locked, sweep
from pipelines.storage.objects import replaced_while_reading
from pipelines.storage.roots import DataRoot, LocalStorage, Storage, open_root
from pipelines.storage.s3_access import unreachable_while_reading
from pipelines.warehouse import view_check
from pipelines.warehouse.glossary import GLOSSARY, VIEW_GLOSSARY
from pipelines.warehouse.sources import (
    account_days_sql,
    attach,
    parquet_sql,
    quote,
    root_macro_sql,
    table_view_sql,
)
from pipelines.warehouse.targets import Target
from pipelines.warehouse.views import (
    ACCOUNT_DAYS,
    DERIVED_VIEWS,
    DRIFT_VIEW,
    TABLE_MACROS,
    with_sources,
)

FILE_NAME = WAREHOUSE_FILE
log = logging.getLogger(__name__)
#: Reads of the views tried again when another writer replaced a file they were reading.
READ_ATTEMPTS = 4
T = TypeVar("T")

#: An exact percentage (4 decimals, truncated) of two DECIMAL amounts, without float.
PERCENT_MACRO = """
CREATE MACRO exact_percent(part, whole) AS CASE WHEN whole = 0 THEN NULL ELSE
    CAST((CAST(part * 100000000 AS HUGEINT) * 1000000) // CAST(whole * 100000000 AS HUGEINT)
         AS DECIMAL(38, 0)) * 0.0001 END
"""

TABLE_COMMENTS = {
    "asset_categories": "output1 of KIS TR CTRP6548R: one row per account, day and asset "
    "category, labelled by the layout for the account's product code.",
    "account_summary": "output2 of KIS TR CTRP6548R: one row per account and day with the "
    "25 account totals under their KIS names.",
}


def on_day(sql: str, day: date) -> str:
    """`sql` with each `?` (all of them stand for the day) replaced by `day` as a DATE literal.

    Our queries inline the day instead of binding it: binding any Python value makes DuckDB
    import pandas, 0.65 s of a one-day run that otherwise never needs it.
    """
    if "?" not in sql:
        raise ValueError(f"no ? (the day) in: {sql}")
    return sql.replace("?", f"DATE '{date.isoformat(day)}'")


def _category_labels_sql() -> str:
    """Every layout's rows as a table: the labels and asset classes, declared in layouts.py."""
    rows = ", ".join(
        f"({quote(name)}, {seq}, {quote(c.code)}, {quote(c.asset_class)})"
        for name, seq, c in layouts.labelled_rows()
    )
    return (
        "CREATE TABLE category_labels (layout VARCHAR, category_seq SMALLINT, "
        f"category_code VARCHAR, asset_class VARCHAR); INSERT INTO category_labels VALUES {rows}"
    )


def default_path(data_root: DataRoot | Storage) -> Path:
    """The warehouse file when KIS_WAREHOUSE is not set: in a local data root, always local."""
    return open_root(data_root).default_warehouse()


def connect(
    data_root: DataRoot | Storage, path: Path | None = None, *, read_only: bool = True
) -> duckdb.DuckDBPyConnection:
    """The warehouse (`path`, default `default_path`), opened so that its views read
    `data_root` (see `attach`)."""
    storage = open_root(data_root)
    con = duckdb.connect(str(path or storage.default_warehouse()), read_only=read_only)
    try:
        attach(con, storage)
    except BaseException:
        con.close()
        raise
    return con


def read(
    data_root: DataRoot | Storage, path: Path | None, work: Callable[[duckdb.DuckDBPyConnection], T]
) -> T:
    """`work` on a `connect`ion, run again on a fresh one if another writer replaced a file it
    was reading (in object storage a reader does not keep the version it started with)."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        with connect(data_root, path) as con:
            try:
                return work(con)
            except duckdb.Error as error:
                if (unreachable := unreachable_while_reading(error)) is not None:
                    raise unreachable from error
                if attempt == READ_ATTEMPTS or not replaced_while_reading(error):
                    raise
        time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def build(
    data_root: DataRoot | Storage,
    targets: list[Target] | None = None,
    *,
    path: Path | None = None,
    capture: CaptureCalendar | None = None,
) -> Path:
    """(Re)create every view in a new file at `path` (default `default_path`), check that each
    answers (view_check.py: ViewError naming the view and the file if one fails, and then the
    old file stays), then swap it in place of the old one.

    One builder at a time (a lock file beside it); readers keep the file they opened. Without
    `capture` the missed_captures view is empty.
    """
    storage = open_root(data_root).absolute()  # paths in views read from any directory
    final = path or open_root(data_root).default_warehouse()
    with locked(final.parent / ".locks" / "warehouse.lock"):
        for leftover in _sweep_leftovers(final):
            log.info("removed %s, left by a killed process", leftover)
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return _build(storage, targets, capture, final)
            except duckdb.Error as error:  # views are bound when created: they read the files
                if (unreachable := unreachable_while_reading(error)) is not None:
                    raise unreachable from error
                if attempt == READ_ATTEMPTS or not replaced_while_reading(error):
                    raise
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def _sweep_leftovers(final: Path) -> list[Path]:
    """What killed builds left beside the warehouse (their temporary file, its DuckDB WAL and
    spill folder), once older than any run can live: no build is alive but ours (we hold the
    builder's lock). And a WAL of the file about to be replaced, left by a killed read-write
    session (`duckdb` without -readonly): DuckDB would replay it into the new file and refuse
    to open it; it goes unless a live session still holds the file."""
    removed = sweep(final.parent, named=lambda name: name.startswith(f".{final.name}."))
    wal = final.with_name(f"{final.name}.wal")
    if wal.exists() and not _held_by_a_writer(final):
        wal.unlink(missing_ok=True)
        removed.append(wal)
    return removed


def _held_by_a_writer(database: Path) -> bool:
    """Whether a live DuckDB session has `database` open for writing (its fcntl write lock)."""
    try:
        fd = os.open(database, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _build(
    storage: Storage,
    targets: list[Target] | None,
    capture: CaptureCalendar | None,
    final: Path,
) -> Path:
    tables, compacted = ParquetTables(storage), CompactedMonths(storage)
    files = {name: compacted.files(name) for name in TABLE_COMMENTS}
    checked = view_check.previously_checked(final)
    with atomic_path(final) as tmp:
        tmp.unlink()  # duckdb creates its own file
        with duckdb.connect(str(tmp)) as con:
            storage.attach(con)
            con.execute("BEGIN")  # one transaction for the whole build, not one per statement
            con.execute(PERCENT_MACRO)
            if isinstance(storage, LocalStorage):
                con.execute(root_macro_sql(storage))
            con.execute(_category_labels_sql())
            _create_capture_tables(con, capture)
            _create_data_source(con, provenance.survey(storage))
            for name, comment in TABLE_COMMENTS.items():
                try:  # binding the view reads a file's footer
                    con.execute(
                        f"CREATE VIEW {name} AS {table_view_sql(name, files[name], tables)}"
                    )
                except duckdb.Error as error:
                    if replaced_while_reading(error):
                        raise
                    sources = view_check.declared_sources()
                    raise view_check.explain(name, error, storage, files, sources) from error
                con.execute(f"COMMENT ON VIEW {name} IS {quote(comment)}")
            view_sources = {
                ACCOUNT_DAYS: account_days_sql(
                    files["account_summary"], files["asset_categories"], tables
                )
            }
            for name, (comment, sql) in DERIVED_VIEWS.items():
                con.execute(f"CREATE VIEW {name} AS {with_sources(sql, view_sources)}")
                con.execute(f"COMMENT ON VIEW {name} IS {quote(comment)}")
            _create_table_macros(con)
            if targets:
                _create_drift(con, targets)
            _comment_columns(con)
            reads = {
                name: parquet_sql(name, files[name], tables, schema.PARTITION_COLUMN)
                for name in TABLE_COMMENTS
            }
            view_check.check(con, storage, files, checked, reads)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        tmp.chmod(0o600)  # DuckDB creates it as the umask says; like every file here, owner-only
    return final


def _create_capture_tables(
    con: duckdb.DuckDBPyConnection, calendar: CaptureCalendar | None
) -> None:
    """capture_settings (one row, none without a calendar) and capture_accounts: what the
    missed_captures view compares account_summary with."""
    con.execute(
        "CREATE TABLE capture_settings (first_day DATE, weekdays SMALLINT[], "
        "window_end_minute INTEGER, time_zone VARCHAR);"
        "CREATE TABLE capture_accounts (account_id VARCHAR)"
    )
    con.execute(
        "COMMENT ON TABLE capture_settings IS 'The capture window''s settings the "
        "missed_captures view reads: the history''s first day, the capture days (ISO day of "
        "week, 1 = Monday) and when the window closes (minutes after midnight)';"
        "COMMENT ON TABLE capture_accounts IS 'The accounts configured when the warehouse was "
        "built: each should have a snapshot on every capture day'"
    )
    if calendar is None:
        return
    weekdays = ", ".join(str(day + 1) for day in sorted(calendar.settings.days))
    con.execute(  # literals: see on_day
        f"INSERT INTO capture_settings VALUES (DATE '{calendar.first_day.isoformat()}', "
        f"[{weekdays}], {calendar.settings.window.end}, {quote(TIME_ZONE)})"
    )
    if calendar.accounts:
        rows = ", ".join(f"({quote(account)})" for account in calendar.accounts)
        con.execute(f"INSERT INTO capture_accounts VALUES {rows}")


def _create_data_source(con: duckdb.DuckDBPyConnection, found: provenance.RootKind) -> None:
    """data_source, one row: whether the root's answers came from the simulator, which the
    views' is_simulated column and the report's banner say."""
    simulated = {True: "true", False: "false", None: "NULL"}[found.is_simulated]
    con.execute(
        "CREATE TABLE data_source (kind VARCHAR, is_simulated BOOLEAN);"
        f"INSERT INTO data_source VALUES ({quote(found.kind)}, {simulated});"
        "COMMENT ON TABLE data_source IS 'Where the data root''s answers came from when the "
        "warehouse was built: kind simulated (the KIS simulator: make demo, KIS_ENV=sim), real, "
        "empty or mixed (see raw/provenance.json and make doctor)'"
    )


def _create_drift(con: duckdb.DuckDBPyConnection, targets: list[Target]) -> None:
    con.execute(
        "CREATE TABLE allocation_targets (asset_class VARCHAR, target_pct DECIMAL(9, 4), "
        "tolerance_pct DECIMAL(9, 4))"
    )
    rows = ", ".join(
        f"({quote(t.asset_class)}, {t.target_pct:f}, {t.tolerance_pct:f})" for t in targets
    )
    con.execute(f"INSERT INTO allocation_targets VALUES {rows}")  # literals: see on_day
    name, comment, sql = DRIFT_VIEW
    con.execute(f"CREATE VIEW {name} AS {sql}")
    con.execute(f"COMMENT ON VIEW {name} IS {quote(comment)}")


def _create_table_macros(con: duckdb.DuckDBPyConnection) -> None:
    """The "as of" table macros over the views, e.g. FROM net_assets_as_of(DATE '2026-03-31');
    each of their columns needs a glossary entry too."""
    for name, (comment, sql) in TABLE_MACROS.items():
        con.execute(f"CREATE MACRO {name}(d) AS TABLE {sql}")
        con.execute(f"COMMENT ON MACRO TABLE {name} IS {quote(comment)}")
        columns = con.execute(f"DESCRIBE FROM {name}(DATE '2000-01-01')").fetchall()
        missing = sorted(column for column, *_ in columns if column not in GLOSSARY)
        if missing:
            raise ValueError(f"macro {name} has columns without a glossary entry: {missing}")


def column_comment(view: str, column: str) -> str | None:
    """The glossary's text for a column of a view: the view's own entry, else the column's."""
    return VIEW_GLOSSARY.get((view, column), GLOSSARY.get(column))


def _comment_columns(con: duckdb.DuckDBPyConnection) -> None:
    """COMMENT ON every column of every view, from the glossary; a missing entry is a bug."""
    columns = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE table_name IN "
        "(SELECT view_name FROM duckdb_views() WHERE NOT internal)"
    ).fetchall()
    missing = sorted({column for v, column in columns if column_comment(v, column) is None})
    if missing:
        raise ValueError(f"warehouse columns without a glossary entry: {', '.join(missing)}")
    comments = [
        f"COMMENT ON COLUMN {v}.{c} IS {quote(column_comment(v, c) or '')}" for v, c in columns
    ]
    con.execute(";".join(comments))


def view_names() -> list[str]:
    return [*TABLE_COMMENTS, *DERIVED_VIEWS]


def macro_names() -> list[str]:
    return list(TABLE_MACROS)
