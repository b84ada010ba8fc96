"""`make sql`: the warehouse, read-only with access to the data root, as a shell or from Python.

    python -m pipelines.commands.sql             # a shell (the `duckdb` CLI for a local root)
    python -m pipelines.commands.sql -c "FROM net_asset_history LIMIT 5"
    >>> from pipelines.commands.sql import connect; connect().sql("FROM latest_allocation").show()

For an s3:// data root the views read the store through s3fs registered on the connection, which
a plain `duckdb` shell cannot do; this module's connection and shell can.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import duckdb

from pipelines.settings import Settings, SettingsError
from pipelines.storage.roots import open_root
from pipelines.warehouse import sources, warehouse


def connect(
    settings: Settings | None = None, *, read_only: bool = True
) -> duckdb.DuckDBPyConnection:
    """The warehouse of the current settings (KIS_WAREHOUSE, KIS_DATA_ROOT), ready to query."""
    settings = settings or Settings.from_env()
    return warehouse.connect(settings.data_root, settings.warehouse, read_only=read_only)


def run(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Execute `sql` and print what it returns as a table."""
    relation = con.sql(sql)
    if relation is not None:
        relation.show(max_rows=100, max_width=200)


def shell(con: duckdb.DuckDBPyConnection, banner: str) -> int:
    """A small line-based shell: statements end with ';', `.quit` or end of input leaves."""
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        print(banner)
    lines: list[str] = []
    failed = False
    while True:
        try:
            line = input(("D " if not lines else "· ") if interactive else "")
        except EOFError:
            break
        if not lines and line.strip() in (".quit", ".exit", "\\q"):
            break
        lines.append(line)
        statement = "\n".join(lines).strip()
        if not statement.endswith(";"):
            continue
        lines = []
        try:
            run(con, statement)
        except duckdb.Error as error:
            print(f"Error: {error}", file=sys.stderr)
            failed = True
    if "\n".join(lines).strip():
        try:
            run(con, "\n".join(lines))
        except duckdb.Error as error:
            print(f"Error: {error}", file=sys.stderr)
            failed = True
    return 1 if failed and not interactive else 0


def duckdb_cli() -> str | None:
    """The `duckdb` shell installed beside this Python (pinned with the duckdb library)."""
    return shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")


def cli_command(cli: str, settings: Settings) -> list[str]:
    """The `duckdb` shell on the warehouse, read-only, its views pointed at the data root (so a
    copied or moved root reads its own files)."""
    command = [cli, "-readonly", str(settings.warehouse)]
    statement = sources.root_statement(settings.data_root)
    return [*command, "-cmd", statement] if statement else command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.commands.sql", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "-c", "--command", action="append", default=[], help="SQL to run (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"Settings: {error}", file=sys.stderr)
        return 2
    if not settings.warehouse.exists():
        print(
            f"No warehouse at {settings.warehouse} yet: run the pipeline first (make run or "
            "make demo).",
            file=sys.stderr,
        )
        return 1
    cli = duckdb_cli()
    if not args.command and open_root(settings.data_root).plain_duckdb_reads and cli:
        # a local root: the real DuckDB shell, same version as the pipeline's
        os.execv(cli, cli_command(cli, settings))
    with connect(settings) as con:
        if args.command:
            try:
                for command in args.command:
                    run(con, command)
            except duckdb.Error as error:
                print(f"Error: {error}", file=sys.stderr)
                return 1
            return 0
        return shell(
            con,
            f"DuckDB {duckdb.__version__} on {settings.warehouse} (read-only), views over "
            f"{settings.data_root}.\nEnd each statement with ';'; .quit or Ctrl-D leaves.",
        )


if __name__ == "__main__":
    sys.exit(main())
