"""The check after every build of the warehouse: every view answers, or the build fails naming
the view and the file behind the error.

Every view reads its rows from the two base views (`asset_categories`, `account_summary`), and
those from the Parquet files; a view fails when a file behind it cannot be read. A query of each
view alone would not do: a count(*) reads only the files' footers, and querying the reporting
views computes them over the whole history (seconds for years of it). So, on each build:

* every Parquet file behind the base views that no earlier build checked whole (new, or changed
  since: its fingerprint differs) is read whole, every page, by the lake's reader; what was
  checked is kept in the warehouse (table `checked_files`), so a day's run reads only the files
  that changed (its own day, a month just compacted);
* the files of each base view are counted by DuckDB exactly as the view reads them, which
  opens every file (footer and schema) without reading its data (the view itself would also
  join every row to its labels); the other views were planned over them when created
  (CREATE VIEW binds the query).

`verify` (pipelines/health.py) counts an existing warehouse's base views and plans each other
view again (`LIMIT 0`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb

from pipelines.errors import DataError
from pipelines.lake import parquet, schema
from pipelines.lake.compaction import TableFiles
from pipelines.storage.damage import DamagedFileError
from pipelines.storage.objects import replaced_while_reading
from pipelines.storage.roots import Location, Storage
from pipelines.storage.s3_access import unreachable_while_reading
from pipelines.warehouse.views import DERIVED_VIEWS, DRIFT_VIEW, SOURCE_TABLES, with_sources

#: The warehouse's table of the files checked whole, with their fingerprints then.
CHECKED_FILES = "checked_files"
#: A file DuckDB names in an error message.
_QUOTED_PARQUET = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


class ViewError(DataError, ValueError):
    """A view of a freshly built warehouse that does not answer: the view, the views built on
    it, and the damaged files behind it (none when the error is not a file's)."""

    def __init__(self, views: list[str], reason: str, damaged: list[DamagedFileError]):
        self.views, self.reason, self.damaged = views, reason, damaged
        also = f" (and {', '.join(views[1:])}, which read it)" if views[1:] else ""
        files = "; ".join(str(error) for error in damaged)
        super().__init__(f"view {views[0]}{also} fails: {files or reason}")


def declared_sources() -> dict[str, str]:
    """Each derived view's SQL as declared (views.py), a source it reads standing for the base
    views behind it."""
    stand_ins = {name: " JOIN ".join(tables) for name, tables in SOURCE_TABLES.items()}
    declared = {name: sql for name, (_, sql) in DERIVED_VIEWS.items()}
    declared[DRIFT_VIEW[0]] = DRIFT_VIEW[2]
    return {name: with_sources(sql, stand_ins) for name, sql in declared.items()}


def built_sources(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Each view's SQL in the warehouse open on `con`, in the order they were created."""
    rows = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY view_oid"
    ).fetchall()
    return {name: sql for name, sql in rows}


def dependent_views(view: str, sources: Mapping[str, str]) -> list[str]:
    """`view` and every view that reads it, directly or through another (`sources`: view → SQL)."""
    found = [view]
    for name in found:  # grows while it is walked
        for other, sql in sources.items():
            if other not in found and re.search(rf"\b{re.escape(name)}\b", sql):
                found.append(other)
    return found


def previously_checked(warehouse: Path) -> dict[str, str]:
    """The files the build of the warehouse at `warehouse` checked whole (key → fingerprint);
    none if there is none, or it cannot be read (then every file is checked again)."""
    if not warehouse.is_file():
        return {}
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return dict(con.execute(f"SELECT key, fingerprint FROM {CHECKED_FILES}").fetchall())
    except duckdb.Error:
        return {}


def check(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    files: Mapping[str, TableFiles],
    previous: Mapping[str, str],
    reads: Mapping[str, str],
) -> None:
    """Check the warehouse being built on `con` (see the module's docstring) and record what was
    checked; ViewError naming the view and the files if a view fails. `reads`: each base view's
    query of its files, as the view reads them."""
    sources = built_sources(con)
    checked: dict[str, str] = {}
    for table, table_files in files.items():
        damaged = []
        for key, fingerprint in table_files.fingerprints.items():
            recorded = json.dumps(list(fingerprint))
            if previous.get(key) != recorded:
                try:
                    parquet.verify(storage.location(key))
                except DamagedFileError as error:
                    damaged.append(error)
                    continue
                except OSError as error:  # replaced meanwhile: the next build checks it
                    if replaced_while_reading(error):
                        continue
                    raise
            checked[key] = recorded
        if damaged:
            raise ViewError(dependent_views(table, sources), "damaged files", damaged)
    counts = {view: f"SELECT count(*) FROM ({sql})" for view, sql in reads.items()}
    for view, failure in failing_views(con, counts):
        raise explain(view, failure, storage, files, sources) from failure
    con.execute(
        f"CREATE TABLE {CHECKED_FILES} (key VARCHAR, fingerprint VARCHAR);"
        f"COMMENT ON TABLE {CHECKED_FILES} IS 'The Parquet files behind the views that were read "
        "whole (every page) by a build, with their fingerprint then: the next build reads only "
        "the others'"
    )
    if checked:  # literals, not bound parameters: binding makes DuckDB import pandas
        rows = ", ".join(f"({_quote(k)}, {_quote(v)})" for k, v in sorted(checked.items()))
        con.execute(f"INSERT INTO {CHECKED_FILES} VALUES {rows}")


def view_queries(sources: Mapping[str, str]) -> dict[str, str]:
    """A query of each view of an existing warehouse: a base view counted (every file behind it
    opened), another planned (`LIMIT 0`)."""
    return {
        view: f"SELECT count(*) FROM {view}" if view in schema.TABLES else f"FROM {view} LIMIT 0"
        for view in sources
    }


def failing_views(
    con: duckdb.DuckDBPyConnection, queries: Mapping[str, str]
) -> Iterator[tuple[str, duckdb.Error]]:
    """Each view whose query (`queries`: view → SQL) fails on `con`, with its error; an object
    store that did not answer is no failing view: StoreUnreachableError."""
    for view, query in queries.items():
        try:
            con.execute(query).fetchall()
        except duckdb.Error as error:
            if replaced_while_reading(error):
                raise
            if (unreachable := unreachable_while_reading(error)) is not None:
                raise unreachable from error
            yield view, error


def explain(
    view: str,
    error: duckdb.Error,
    storage: Storage,
    files: Mapping[str, TableFiles],
    sources: Mapping[str, str],
) -> ViewError:
    """The ViewError for `error` from a query of `view`: the files it names, read by the lake's
    reader; if it names none, every file behind the views, until the damaged ones are found.
    StoreUnreachableError if the error is an object store that did not answer a read."""
    if (unreachable := unreachable_while_reading(error)) is not None:
        raise unreachable from error
    text = str(error).strip().splitlines()[0]
    locations: dict[str, Location] = {
        str(storage.location(key)): storage.location(key)
        for table_files in files.values()
        for key in table_files.fingerprints
    }
    named = _QUOTED_PARQUET.findall(str(error))
    damaged = []
    for path in named or list(locations):
        location = locations.get(path) or Path(path)
        try:
            parquet.verify(location)
        except DamagedFileError as damage:
            damaged.append(damage)
        except FileNotFoundError:
            damaged.append(DamagedFileError(location, "missing: " + text))
        else:
            if named:  # DuckDB cannot read what pyarrow can: damaged all the same
                damaged.append(DamagedFileError(location, text))
    return ViewError(dependent_views(view, sources), text, damaged)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
