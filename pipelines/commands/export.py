"""`make export`: chosen warehouse views written to CSV and Parquet files, for a spreadsheet.

    python -m pipelines.commands.export                       # the default views into exports/
    python -m pipelines.commands.export net_assets_monthly --out ~/kis --format csv

Amounts stay exact in both formats: DECIMAL(38,8) in Parquet, the exact decimal text in CSV
("1651869889547.00000000", never a float). Each file is written whole under a temporary name
and renamed, readable by you only (0600), so a spreadsheet never opens half a file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.commands.sql import connect
from pipelines.settings import Settings, SettingsError
from pipelines.storage.files import atomic_path

#: What `make export` writes without arguments: the figures a person reads first.
DEFAULT_VIEWS = (
    "net_asset_history",
    "consolidated_net_assets",
    "net_assets_monthly",
    "latest_allocation",
)
FORMATS = {"csv": "(FORMAT csv, HEADER)", "parquet": "(FORMAT parquet, COMPRESSION zstd)"}
DEFAULT_DIR = Path("exports")
USAGE = (
    "python -m pipelines.commands.export [VIEW ...] [--out DIR] [--format csv,parquet]  "
    "(make export EXPORT_ARGS='…')"
)


@dataclass(frozen=True)
class Exported:
    view: str
    rows: int
    paths: list[Path]


def export(
    con: duckdb.DuckDBPyConnection,
    views: Sequence[str],
    out: Path,
    formats: Sequence[str] = tuple(FORMATS),
) -> list[Exported]:
    """Write each view, ordered by every column, to `out/<view>.<format>`; replaces older files."""
    known = set(available_views(con))
    unknown = [view for view in views if view not in known]
    if unknown:
        raise ValueError(
            f"no view {', '.join(unknown)} in the warehouse; the views are: "
            f"{', '.join(sorted(known))}"
        )
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format {', '.join(bad)}; use {' and/or '.join(FORMATS)}")
    done = []
    for view in views:
        paths = []
        for kind in formats:
            final = out / f"{view}.{kind}"
            with atomic_path(final) as tmp:
                target = str(tmp).replace("'", "''")
                con.execute(
                    f"COPY (SELECT * FROM \"{view}\" ORDER BY ALL) TO '{target}' {FORMATS[kind]}"
                )
                tmp.chmod(0o600)  # DuckDB writes a new file with the default mode
            paths.append(final)
        [(rows,)] = con.execute(f'SELECT count(*) FROM "{view}"').fetchall()
        done.append(Exported(view, rows, paths))
    return done


def available_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        row[0]
        for row in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
        ).fetchall()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.commands.export",
        usage=USAGE,
        description="Write warehouse views to CSV and Parquet files (exact decimals in both).",
    )
    parser.add_argument(
        "views",
        nargs="*",
        metavar="VIEW",
        help=f"views to write (default: {' '.join(DEFAULT_VIEWS)})",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_DIR, help="folder to write into (default: exports/)"
    )
    parser.add_argument(
        "--format",
        default=",".join(FORMATS),
        help="csv, parquet or both, comma-separated (default: csv,parquet)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        parser.error(str(error))
    if not settings.warehouse.is_file():
        parser.error(f"no warehouse at {settings.warehouse}: run `make demo` or `make run` first")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    with connect(settings) as con:
        try:
            done = export(con, args.views or DEFAULT_VIEWS, args.out, formats)
        except ValueError as error:
            parser.error(str(error))
    for item in done:
        print(f"{item.view}: {item.rows:,} rows → {', '.join(str(p) for p in item.paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
