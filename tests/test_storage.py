"""Storage: atomic writes, the raw landing, the Parquet tables and the DuckDB warehouse."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from pipelines.ingest.landing import RawLanding, Snapshot, read_snapshot
from pipelines.kis import layouts, protocol
from pipelines.kis.client import BalanceResponse, Credentials, KisClient, Page
from pipelines.kis.protocol import Account
from pipelines.kis.tokens import TokenCache
from pipelines.lake import schema
from pipelines.lake.tables import ParquetTables
from pipelines.simulator.portfolio import balance_body
from pipelines.storage.files import atomic_path
from pipelines.tidy import flatten
from pipelines.warehouse import warehouse

STANDARD = Account.parse("12345678-01")
PRODUCT21 = Account.parse("12345678-21")
WHALE = Account.parse("98765432-19")  # 19-digit totals
DAY1 = date(2024, 5, 2)
DAY2 = date(2024, 5, 3)
APP_KEY = "PSapp-key-0123456789abcdefghijklmn"
APP_SECRET = "app-secret-ZYXWVUTSRQ+/=0987654321"
ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.access-token-payload.signature"
VIEWS = (
    "asset_categories",
    "account_summary",
    "latest_allocation",
    "net_asset_history",
    "consolidated_allocation",
    "allocation_history",
    "pnl_by_category",
    "consolidated_net_assets",
    "net_assets_monthly",
    "snapshot_calendar",
    "missed_captures",
)


def fetched(day: date, hour: int, minute: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, 0, micro, tzinfo=UTC)


def response(account: Account, at: datetime, body: dict[str, Any] | None = None) -> BalanceResponse:
    body = balance_body(account, at.date()) if body is None else body
    page = Page(200, protocol.BALANCE_TR_ID, "D", json.dumps(body, ensure_ascii=False))
    return BalanceResponse(account, at, (page,))


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


# -- atomic_path ----------------------------------------------------------------------------


def test_atomic_path_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "deep" / "er" / "file.bin"  # parents are created
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        tmp.write_bytes(b"first")
    assert final.read_bytes() == b"first"
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"second")
        assert final.read_bytes() == b"first"  # readers see the old file until the swap
    assert final.read_bytes() == b"second"
    assert listing(final.parent) == ["file.bin"]


def test_atomic_path_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    final = tmp_path / "file.bin"
    previous = bytes(range(256)) * 3
    final.write_bytes(previous)
    with pytest.raises(RuntimeError, match="boom"), atomic_path(final) as tmp:
        tmp.write_bytes(b"half of a new file")
        raise RuntimeError("boom")
    assert final.read_bytes() == previous
    assert listing(tmp_path) == ["file.bin"]


def test_atomic_path_failure_creates_nothing(tmp_path: Path) -> None:
    final = tmp_path / "new.bin"
    with pytest.raises(KeyError), atomic_path(final, overwrite=False) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyError("boom")
    assert listing(tmp_path) == []


def test_atomic_path_without_overwrite_refuses_an_existing_file(tmp_path: Path) -> None:
    final = tmp_path / "landed.json"
    final.write_bytes(b'{"kept": true}')
    with pytest.raises(FileExistsError), atomic_path(final, overwrite=False) as tmp:
        tmp.write_bytes(b'{"kept": false}')
    assert final.read_bytes() == b'{"kept": true}'
    assert listing(tmp_path) == ["landed.json"]


def test_atomic_path_without_overwrite_creates_a_new_file(tmp_path: Path) -> None:
    final = tmp_path / "landed.json"
    with atomic_path(final, overwrite=False) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"
    assert listing(tmp_path) == ["landed.json"]


# -- RawLanding -----------------------------------------------------------------------------


class FakeSession(requests.Session):
    """Answers the client like KIS would, without a network; records what was sent."""

    def __init__(self, bodies: dict[Account, dict[str, Any]]):
        super().__init__()
        self.bodies = bodies
        self.sent_headers: list[dict[str, str]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.sent_headers.append(dict(kwargs.get("headers") or {}))
        answer = requests.Response()
        answer.status_code = 200
        answer.encoding = "utf-8"
        answer.headers = CaseInsensitiveDict({"content-type": "application/json; charset=utf-8"})
        if str(url).endswith(protocol.TOKEN_PATH):
            expires = (datetime.now(UTC) + timedelta(hours=23)).strftime("%Y-%m-%d %H:%M:%S")
            body: dict[str, Any] = {
                "access_token": ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": 86400,
                "access_token_token_expired": expires,
            }
        else:
            params = kwargs["params"]
            body = self.bodies[Account(params["CANO"], params["ACNT_PRDT_CD"])]
            answer.headers.update({"tr_id": protocol.BALANCE_TR_ID, "tr_cont": "D"})
        # as a real answer comes: a stream the client reads (the body is never preloaded)
        answer.raw = urllib3.HTTPResponse(
            body=io.BytesIO(json.dumps(body, ensure_ascii=False).encode()), preload_content=False
        )
        return answer


def test_land_writes_the_envelope_without_secrets(tmp_path: Path) -> None:
    body = balance_body(STANDARD, DAY1)
    session = FakeSession({STANDARD: body})
    at = fetched(DAY1, 6, 30, 123456)
    client = KisClient(
        "https://kis.invalid",
        Credentials(APP_KEY, APP_SECRET),
        token_cache=TokenCache(tmp_path / "tokens"),
        session=session,
        clock=lambda: at,
    )
    answer = client.inquire_account_balance(STANDARD)
    # The secrets really were in play: the client sent them with the balance request.
    balance_headers = session.sent_headers[-1]
    assert balance_headers["appsecret"] == APP_SECRET
    assert ACCESS_TOKEN in balance_headers["authorization"]

    landing = RawLanding(tmp_path / "data")
    path = landing.land(answer, DAY1, source={"env": "real", "server": "https://kis.invalid"})

    assert path == (
        tmp_path
        / "data/raw/CTRP6548R/snapshot_date=2024-05-02/12345678-01/20240502T063000123456Z.json"
    )
    text = path.read_text()
    for secret in (APP_SECRET, APP_KEY, ACCESS_TOKEN, "Bearer"):
        assert secret not in text
    envelope = json.loads(text)
    assert sorted(envelope) == sorted(
        [
            "format",
            "tr_id",
            "account_id",
            "snapshot_date",
            "fetched_at",
            "source",
            "request",
            "pages",
        ]
    )
    assert envelope["format"] == "kis-balance-raw/1"
    assert envelope["tr_id"] == protocol.BALANCE_TR_ID
    assert envelope["account_id"] == STANDARD.id
    assert envelope["snapshot_date"] == DAY1.isoformat()
    assert datetime.fromisoformat(envelope["fetched_at"]) == at
    assert envelope["source"] == {"env": "real", "server": "https://kis.invalid"}
    assert envelope["request"] == {
        "path": protocol.BALANCE_PATH,
        "params": protocol.balance_params(STANDARD),
    }
    [page] = envelope["pages"]
    assert page == {
        "status": 200,
        "tr_id": protocol.BALANCE_TR_ID,
        "tr_cont": "D",
        "body": answer.pages[0].body,  # verbatim text, padding and Korean included
    }
    assert json.loads(page["body"]) == body
    assert listing(path.parent) == [path.name]


def test_land_never_replaces_a_landed_file(tmp_path: Path) -> None:
    landing = RawLanding(tmp_path)
    at = fetched(DAY1, 1)
    path = landing.land(response(STANDARD, at), DAY1, source={})
    before = path.read_bytes()
    other_body = balance_body(STANDARD, DAY2)
    with pytest.raises(FileExistsError):
        landing.land(response(STANDARD, at, other_body), DAY1, source={})
    assert path.read_bytes() == before
    assert landing.all_files(DAY1) == [path]


def test_latest_files_picks_the_newest_fetch_of_each_account(tmp_path: Path) -> None:
    landing = RawLanding(tmp_path)
    fetches = {
        PRODUCT21: [fetched(DAY1, 9, 0, 1), fetched(DAY1, 1), fetched(DAY1, 9)],
        STANDARD: [fetched(DAY1, 23, 59, 999999), fetched(DAY1, 10), fetched(DAY1, 2)],
        WHALE: [fetched(DAY1, 0)],
    }
    for account, times in fetches.items():
        for at in times:  # landed out of chronological order on purpose
            landing.land(response(account, at), DAY1, source={})
    landing.land(response(STANDARD, fetched(DAY2, 23, 59, 59)), DAY2, source={})

    latest = landing.latest_files(DAY1)
    assert [p.parent.name for p in latest] == sorted(a.id for a in fetches)
    for path in latest:
        snap = read_snapshot(path)
        assert snap.fetched_at == max(fetches[snap.account])
        assert snap.snapshot_date == DAY1
    assert len(landing.all_files(DAY1)) == sum(len(times) for times in fetches.values())
    assert len(landing.all_files(DAY2)) == 1
    assert [p.parent.name for p in landing.latest_files(DAY2)] == [STANDARD.id]


def test_a_day_with_nothing_landed(tmp_path: Path) -> None:
    landing = RawLanding(tmp_path)
    assert landing.latest_files(DAY1) == []
    assert landing.all_files(DAY1) == []


# -- ParquetTables --------------------------------------------------------------------------


def snapshot(account: Account, day: date = DAY1) -> Snapshot:
    body = balance_body(account, day)
    path = Path(f"/landed/{account.id}.json")
    return Snapshot(account, day, fetched(day, 6), body["output1"], body["output2"], path)


def categories_table(*accounts: Account, day: date = DAY1) -> pa.Table:
    return flatten.asset_categories(snapshot(account, day) for account in accounts)


def _with_field(table: pa.Table, name: str, field: pa.Field) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, field, table.column(name).cast(field.type))


def _mutations() -> dict[str, Any]:
    def float_amount(t: pa.Table) -> pa.Table:
        return _with_field(t, "pchs_amt", pa.field("pchs_amt", pa.float64()))

    def narrower_decimal(t: pa.Table) -> pa.Table:
        return _with_field(t, "evlu_amt", pa.field("evlu_amt", pa.decimal128(38, 2)))

    def nullable_key(t: pa.Table) -> pa.Table:
        return _with_field(t, "account_id", pa.field("account_id", pa.string(), nullable=True))

    def dropped(t: pa.Table) -> pa.Table:
        return t.drop_columns(["whol_weit_rt"])

    def extra(t: pa.Table) -> pa.Table:
        return t.append_column("note", pa.array([""] * t.num_rows))

    def reordered(t: pa.Table) -> pa.Table:
        names = t.column_names
        return t.select([names[1], names[0], *names[2:]])

    def naive_time(t: pa.Table) -> pa.Table:
        return _with_field(t, "fetched_at", pa.field("fetched_at", pa.timestamp("us"), False))

    return {
        f.__name__: f
        for f in (
            float_amount,
            narrower_decimal,
            nullable_key,
            dropped,
            extra,
            reordered,
            naive_time,
        )
    }


@pytest.mark.parametrize("mutation", list(_mutations()))
def test_write_refuses_a_table_of_another_schema(tmp_path: Path, mutation: str) -> None:
    tables = ParquetTables(tmp_path / "data")
    good = categories_table(STANDARD)
    kept = tables.write("asset_categories", DAY1, good)
    before = kept.read_bytes()
    bad = _mutations()[mutation](good)
    assert not bad.schema.equals(schema.ASSET_CATEGORIES)
    with pytest.raises(ValueError, match="asset_categories: schema differs"):
        tables.write("asset_categories", DAY1, bad)
    with pytest.raises(ValueError, match="schema differs"):
        tables.write("asset_categories", DAY2, bad)
    assert kept.read_bytes() == before
    assert not tables.path("asset_categories", DAY2).exists()
    assert tables.days("asset_categories") == [DAY1]


def test_write_refuses_one_table_under_the_other_name(tmp_path: Path) -> None:
    tables = ParquetTables(tmp_path)
    snaps = [snapshot(STANDARD)]
    with pytest.raises(ValueError, match="account_summary: schema differs"):
        tables.write("account_summary", DAY1, flatten.asset_categories(snaps))
    assert tables.days("account_summary") == []


def test_days_lists_written_days_per_table(tmp_path: Path) -> None:
    tables = ParquetTables(tmp_path)
    assert tables.days("asset_categories") == []
    days = [date(2024, 12, 31), date(2024, 1, 2), date(2024, 5, 3)]
    for day in days:
        written = tables.write("asset_categories", day, categories_table(STANDARD, day=day))
        assert written == tables.path("asset_categories", day)
        assert written.parent.name == f"snapshot_date={day.isoformat()}"
    (tables.root / "asset_categories" / "snapshot_date=2024-06-01").mkdir()  # no data file
    assert tables.days("asset_categories") == sorted(days)
    assert tables.days("account_summary") == []


def test_rewriting_a_day_replaces_it_whole(tmp_path: Path) -> None:
    tables = ParquetTables(tmp_path)
    path = tables.write("asset_categories", DAY1, categories_table(STANDARD, PRODUCT21))
    tables.write("asset_categories", DAY1, categories_table(PRODUCT21))
    with duckdb.connect() as con:
        accounts = con.execute(f"SELECT DISTINCT account_id FROM read_parquet('{path}')")
        assert accounts.fetchall() == [(PRODUCT21.id,)]
    assert listing(path.parent) == [path.name]


# -- warehouse.build ------------------------------------------------------------------------

PLAN: dict[date, tuple[Account, ...]] = {
    DAY1: (STANDARD, PRODUCT21, WHALE),
    DAY2: (STANDARD, WHALE),  # PRODUCT21 was not fetched on DAY2
}


def populate(data_root: Path) -> dict[tuple[Account, date], dict[str, Any]]:
    """Land, flatten and write PLAN; return each body sent, by account and day."""
    landing, tables = RawLanding(data_root), ParquetTables(data_root)
    sent: dict[tuple[Account, date], dict[str, Any]] = {}
    for day, accounts in PLAN.items():
        for account in accounts:
            sent[account, day] = balance_body(account, day)
            landing.land(response(account, fetched(day, 6), sent[account, day]), day, source={})
        snaps = [read_snapshot(p) for p in landing.latest_files(day)]
        tables.write("asset_categories", day, flatten.asset_categories(snaps))
        tables.write("account_summary", day, flatten.account_summary(snaps))
    return sent


def view_types(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {view}").fetchall()]


def test_build_creates_every_view_with_a_comment(tmp_path: Path) -> None:
    populate(tmp_path)
    path = warehouse.build(tmp_path)
    assert path == tmp_path / warehouse.FILE_NAME
    with duckdb.connect(str(path), read_only=True) as con:
        found = dict(
            con.execute(
                "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        )
    assert set(found) == set(VIEWS) == set(warehouse.view_names())
    assert all(comment for comment in found.values())
    assert listing(tmp_path) == sorted(["parquet", "raw", warehouse.FILE_NAME])


def test_warehouse_opens_read_only_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    populate(Path("data"))
    warehouse.build(Path("data"))  # built from a relative data root
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    expected_rows = sum(
        layouts.for_product(a.product_code).row_count
        for accounts in PLAN.values()
        for a in accounts
    )
    with duckdb.connect(str(tmp_path / "data" / warehouse.FILE_NAME), read_only=True) as con:
        (rows,) = con.execute("SELECT count(*) FROM asset_categories").fetchone() or (0,)
        (summaries,) = con.execute("SELECT count(*) FROM net_asset_history").fetchone() or (0,)
    assert rows == expected_rows
    assert summaries == sum(len(accounts) for accounts in PLAN.values())


def test_latest_allocation_has_each_accounts_newest_day_only(tmp_path: Path) -> None:
    sent = populate(tmp_path)
    newest = {account: max(day for a, day in sent if a == account) for account, _ in sent}
    assert newest[PRODUCT21] == DAY1 and newest[STANDARD] == DAY2  # the plan is as intended
    with duckdb.connect(str(warehouse.build(tmp_path)), read_only=True) as con:
        rows = con.execute(
            "SELECT account_id, snapshot_date, category_seq, market_value FROM latest_allocation "
            "ORDER BY account_id, category_seq"
        ).fetchall()
    by_account: dict[str, list[tuple[Any, ...]]] = {}
    for account_id, day, seq, value in rows:
        by_account.setdefault(account_id, []).append((day, seq, value))
    assert set(by_account) == {a.id for a in newest}
    for account, day in newest.items():
        body = sent[account, day]
        assert by_account[account.id] == [
            (day, seq, Decimal(row["evlu_amt"])) for seq, row in enumerate(body["output1"], start=1)
        ]


def test_net_asset_history_changes_are_exact_differences(tmp_path: Path) -> None:
    sent = populate(tmp_path)
    with duckdb.connect(str(warehouse.build(tmp_path)), read_only=True) as con:
        result = con.execute(
            "SELECT account_id, snapshot_date, previous_snapshot_date, total_assets, net_assets, "
            "total_assets_change, net_assets_change FROM net_asset_history"
        ).fetchall()
    history = {(row[0], row[1]): row[2:] for row in result}
    assert set(history) == {(a.id, d) for a, d in sent}
    for (account, day), body in sent.items():
        previous_day, total, net, total_change, net_change = history[account.id, day]
        out2 = body["output2"]
        assert total == Decimal(out2["tot_asst_amt"])
        # net assets: the 합계 row's real_nass_amt (nass_tot_amt is securities only)
        assert net == Decimal(body["output1"][-1]["real_nass_amt"])
        previous = day - timedelta(days=1)
        if (account, previous) in sent:
            before = sent[account, previous]
            assert previous_day == previous
            assert total_change == Decimal(out2["tot_asst_amt"]) - Decimal(
                before["output2"]["tot_asst_amt"]
            )
            assert net_change == net - Decimal(before["output1"][-1]["real_nass_amt"])
        else:
            assert (previous_day, total_change, net_change) == (None, None, None)
    # The whale's totals have 19 digits: the exact change is not what float64 would give.
    whale_change = history[WHALE.id, DAY2][3]
    assert len(str(abs(int(history[WHALE.id, DAY2][1])))) == 19
    assert whale_change is not None and whale_change != 0


def test_build_without_data_gives_empty_views_of_the_right_types(tmp_path: Path) -> None:
    empty_root = tmp_path / "empty"
    with duckdb.connect(str(warehouse.build(empty_root)), read_only=True) as con:
        empty = {view: view_types(con, view) for view in VIEWS}
        for view in VIEWS:
            (count,) = con.execute(f"SELECT count(*) FROM {view}").fetchone() or (None,)
            assert count == 0, view
    full_root = tmp_path / "full"
    populate(full_root)
    with duckdb.connect(str(warehouse.build(full_root)), read_only=True) as con:
        full = {view: view_types(con, view) for view in VIEWS}
    assert empty == full  # same names, order and types as views over real Parquet files
    for name, table_schema in schema.TABLES.items():
        columns = dict(empty[name])
        extra = ["asset_class"] if name == "asset_categories" else []  # looked up, not stored
        assert list(columns) == [schema.PARTITION_COLUMN, *table_schema.names, *extra]
        assert columns[schema.PARTITION_COLUMN] == "DATE"
        for field in table_schema:
            if field.type == schema.AMOUNT:
                assert columns[field.name] == "DECIMAL(38,8)", field.name


def test_rebuild_swaps_in_views_over_new_days(tmp_path: Path) -> None:
    path = warehouse.build(tmp_path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert (con.execute("SELECT count(*) FROM account_summary").fetchone() or (None,))[0] == 0
    populate(tmp_path)
    assert warehouse.build(tmp_path) == path
    with duckdb.connect(str(path), read_only=True) as con:
        (count,) = con.execute("SELECT count(*) FROM account_summary").fetchone() or (None,)
    assert count == sum(len(accounts) for accounts in PLAN.values())
    assert listing(tmp_path) == sorted(["parquet", "raw", warehouse.FILE_NAME])
    assert not any(name.endswith((".tmp", ".wal")) for name in os.listdir(tmp_path))
