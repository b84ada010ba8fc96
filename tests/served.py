"""What the simulator served, and checks that a data root holds exactly that: every view and
table macro answers, every amount is the one served for its account and day, once, and no
secret (app key, app secret, token) is in any file."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS, Account
from pipelines.settings import SIM_ACCOUNTS, Settings
from pipelines.simulator.portfolio import balance_body
from pipelines.storage.roots import Storage
from pipelines.warehouse import warehouse

#: The simulator's default accounts: a standard one holding stocks on credit, and product 21.
ACCOUNTS: tuple[Account, ...] = SIM_ACCOUNTS


def cut(path: Path) -> None:
    """Truncate a file to half its size, as a full disk or a killed copy leaves it."""
    os.truncate(path, path.stat().st_size // 2)


def closed_month_days(today: date) -> list[date]:
    """The last two days of the month before `today`'s: a closed month, which runs compact."""
    last = today.replace(day=1) - timedelta(days=1)
    return [last - timedelta(days=1), last]


def assert_served(con: duckdb.DuckDBPyConnection, account: Account, day: date) -> None:
    """The views hold exactly what the simulator served for the account on the day."""
    body = balance_body(account, day)
    rows = con.execute(
        f"SELECT {', '.join(OUTPUT1_FIELDS)} FROM asset_categories "
        "WHERE account_id = ? AND snapshot_date = ? ORDER BY category_seq",
        [account.id, day],
    ).fetchall()
    assert rows == [tuple(Decimal(row[f]) for f in OUTPUT1_FIELDS) for row in body["output1"]]
    [summary] = con.execute(
        f"SELECT {', '.join(OUTPUT2_FIELDS)} FROM account_summary "
        "WHERE account_id = ? AND snapshot_date = ?",
        [account.id, day],
    ).fetchall()
    assert summary == tuple(Decimal(body["output2"][f]) for f in OUTPUT2_FIELDS)


def assert_all_served(
    days: list[date], settings: Settings | None = None, accounts: Iterable[Account] = ACCOUNTS
) -> None:
    """Every view's base rows are exactly what the simulator served, for every account and day
    (of `settings`, by default KIS_DATA_ROOT and KIS_WAREHOUSE), and no other day is there."""
    settings = settings or Settings.from_env()
    with warehouse.connect(settings.data_root, settings.warehouse) as con:
        for day in days:
            for account in accounts:
                assert_served(con, account, day)
        assert con.sql("SELECT count(DISTINCT snapshot_date) FROM account_summary").fetchone() == (
            len(days),
        )


def net_assets_served(account: Account, day: date) -> Decimal:
    """The net assets the simulator served: its 합계 row's real_nass_amt (the last row)."""
    return Decimal(balance_body(account, day)["output1"][-1]["real_nass_amt"])


def every_view_and_macro(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, list[Any]]:
    """Every row of every view, and of every table macro as of `day`: a query that fails
    raises (naming the view)."""
    views = [
        name
        for (name,) in con.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1"
        ).fetchall()
    ]
    macros = [
        name
        for (name,) in con.sql(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_type = 'table_macro' AND NOT internal ORDER BY 1"
        ).fetchall()
    ]
    answers: dict[str, list[Any]] = {}
    for name, sql, parameters in [
        *((name, f"FROM {name}", []) for name in views),
        *((f"{name}({day})", f"FROM {name}(?)", [day]) for name in macros),
    ]:
        try:
            answers[name] = con.execute(sql, parameters).fetchall()
        except duckdb.Error as error:
            raise AssertionError(f"{name} does not answer: {error}") from error
    return answers


def assert_reporting_served(
    con: duckdb.DuckDBPyConnection, days: list[date], accounts: Iterable[Account] = ACCOUNTS
) -> None:
    """net_asset_history, consolidated_net_assets and the table macros as of the last day hold
    the served net assets and market values, one row per account and day (per day, for the
    consolidated view)."""
    accounts = list(accounts)
    expected = {
        (day, account.id): net_assets_served(account, day) for day in days for account in accounts
    }
    history = con.sql("SELECT snapshot_date, account_id, net_assets FROM net_asset_history")
    rows = history.fetchall()
    assert len(rows) == len({(d, a) for d, a, _ in rows}), "net_asset_history repeats a day"
    assert {(d, a): n for d, a, n in rows} == expected
    consolidated = con.sql(
        "SELECT snapshot_date, net_assets, accounts, is_complete FROM consolidated_net_assets"
    ).fetchall()
    assert sorted(consolidated) == [
        (day, sum(expected[(day, a.id)] for a in accounts), len(accounts), True)
        for day in sorted(days)
    ]
    last = max(days)
    as_of = con.execute(
        "SELECT account_id, snapshot_date, days_old, net_assets FROM net_assets_as_of(?)", [last]
    ).fetchall()
    assert sorted(as_of) == sorted((a.id, last, 0, expected[(last, a.id)]) for a in accounts)
    allocation = con.execute(
        "SELECT account_id, snapshot_date, category_seq, market_value FROM allocation_as_of(?)",
        [last],
    ).fetchall()
    assert sorted(allocation) == sorted(
        (a.id, last, seq, Decimal(row["evlu_amt"]))
        for a in accounts
        for seq, row in enumerate(balance_body(a, last)["output1"], start=1)
    )


def assert_once(con: duckdb.DuckDBPyConnection) -> None:
    """One snapshot per account and day in every base view (one row per category)."""
    for view, key in (
        ("account_summary", "account_id, snapshot_date"),
        ("asset_categories", "account_id, snapshot_date, category_seq"),
    ):
        repeated = con.sql(f"SELECT {key}, count(*) FROM {view} GROUP BY ALL HAVING count(*) > 1")
        assert repeated.fetchall() == [], f"{view} holds a snapshot twice"


def body_of(envelope: dict[str, Any]) -> bytes:
    """The body of a quarantined answer (`kis-balance-quarantine/1`), as it was received."""
    answer = envelope["answer"]
    if answer["body_encoding"] == "base64":
        return base64.b64decode(answer["body"])
    assert answer["body_encoding"] == "utf-8"
    return str(answer["body"]).encode()


def assert_no_secret_anywhere(files: Mapping[str, bytes], secrets: Mapping[str, str]) -> None:
    """No file (by name: its bytes) holds a secret (by what it is: its value), in its bytes or,
    for a quarantined answer, in its body however it is encoded."""
    found = []
    for name, data in files.items():
        texts = [data]
        if name.endswith(".json") and b'"answer"' in data:
            try:
                envelope = json.loads(data)
            except ValueError:  # a damaged raw answer: its bytes are searched as they are
                envelope = None
            if isinstance(envelope, dict) and isinstance(envelope.get("answer"), dict):
                texts.append(body_of(envelope))
        found += [
            f"{name}: {what}"
            for what, secret in secrets.items()
            if any(secret.encode() in text for text in texts)
        ]
    assert found == [], f"secrets in files: {found}"


def every_file(storage: Storage) -> dict[str, bytes]:
    """Every file of a data root (local or s3://) but its hidden folders, by key: its bytes."""
    return {key: storage.read_bytes(key) for key in storage.files("")}


def local_files(*roots: Path) -> dict[str, bytes]:
    """Every file under the folders (or the files themselves), by path: its bytes."""
    files: dict[str, bytes] = {}
    for root in roots:
        paths = [root] if root.is_file() else root.rglob("*")
        files |= {str(p): p.read_bytes() for p in paths if p.is_file() and not p.is_symlink()}
    return files
