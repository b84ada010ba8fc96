"""Redacted real (and simulated) answers in tests/replay/, replayed through the whole tidy path.

Each file is put where the fetch step lands it, then read_snapshot → flatten → checks → Parquet
→ warehouse views, and every value in the views is compared with the file's text as a Decimal.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.ingest.landing import RawLanding, Snapshot, read_snapshot
from pipelines.kis import layouts
from pipelines.kis.client import BalanceResponse, Page
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS, Account
from pipelines.lake.compaction import CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.reporting import report
from pipelines.tidy import build as tidy
from pipelines.tidy import flatten
from pipelines.warehouse import warehouse

REPLAY_DIR = Path(__file__).parent / "replay"
FILES = sorted(REPLAY_DIR.glob("*.json"))


def land_copy(path: Path, data_root: Path) -> Path:
    """The file copied to raw/CTRP6548R/snapshot_date=D/<account>/<fetched_at>.json."""
    envelope = json.loads(path.read_text())
    day = date.fromisoformat(envelope["snapshot_date"])
    name = datetime.fromisoformat(envelope["fetched_at"]).strftime("%Y%m%dT%H%M%S%fZ") + ".json"
    target = RawLanding(data_root).day_dir(day) / envelope["account_id"] / name
    target.parent.mkdir(parents=True)
    shutil.copyfile(path, target)
    return target


def exact(text: Any) -> Decimal | None:
    """What the view must hold for an amount string: its exact value, NULL only for blank."""
    assert isinstance(text, str), text
    return Decimal(text.strip()) if text.strip() else None


def test_the_replay_directory_has_files() -> None:
    assert len(FILES) >= 3
    assert (REPLAY_DIR / "README.md").is_file()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_a_replayed_answer_lands_exactly(path: Path, tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    snapshot = read_snapshot(land_copy(path, data_root))
    account, day = snapshot.account, snapshot.snapshot_date
    layout = layouts.find(account.product_code, len(snapshot.output1))
    assert layout is not None, f"{path.name}: {len(snapshot.output1)} rows match no layout"

    result = tidy.build_days(data_root, [day])
    errors = [o for o in result.outcomes if o.check.is_error and o.problems]
    assert not errors, [(o.check.name, o.problems) for o in errors]
    assert not result.withheld
    warehouse.build(data_root)

    with duckdb.connect(str(data_root / warehouse.FILE_NAME), read_only=True) as con:
        rows = con.execute(
            f"SELECT layout, category_seq, category_ko, is_total, {', '.join(OUTPUT1_FIELDS)} "
            "FROM asset_categories WHERE account_id = ? AND snapshot_date = ? "
            "ORDER BY category_seq",
            [account.id, day],
        ).fetchall()
        summary = con.execute(
            f"SELECT {', '.join(OUTPUT2_FIELDS)} FROM account_summary "
            "WHERE account_id = ? AND snapshot_date = ?",
            [account.id, day],
        ).fetchall()
        history = con.execute(
            "SELECT net_assets, total_assets, securities_value, cash, loans, purchase_amount, "
            "unrealized_pnl FROM net_asset_history WHERE account_id = ? AND snapshot_date = ?",
            [account.id, day],
        ).fetchall()

    assert len(rows) == len(snapshot.output1) == layout.row_count
    assert [r[0] for r in rows] == [layout.name] * layout.row_count
    assert [r[2] for r in rows] == [c.ko for c in layout.categories]
    *_, total = rows
    assert total[3] is True
    assert total[4 + OUTPUT1_FIELDS.index("evlu_amt")] == exact(snapshot.output1[-1]["evlu_amt"])
    for seq, (row, raw) in enumerate(zip(rows, snapshot.output1, strict=True), start=1):
        for index, name in enumerate(OUTPUT1_FIELDS):
            assert row[4 + index] == exact(raw[name]), (path.name, seq, name)
    [values] = summary
    for name, value in zip(OUTPUT2_FIELDS, values, strict=True):
        assert value == exact(snapshot.output2[name]), (path.name, name)
    # net assets and cash from output1 (the 합계 row; the deposit rows by category), totals
    # and securities from output2 under their KIS names
    last = snapshot.output1[-1]
    cash = sum(
        (
            Decimal(raw["evlu_amt"])
            for category, raw in zip(layout.categories, snapshot.output1, strict=True)
            if category.code in layouts.CASH_DEPOSIT_CODES
        ),
        Decimal(0),
    )
    assert history == [
        (
            exact(last["real_nass_amt"]),
            exact(snapshot.output2["tot_asst_amt"]),
            exact(snapshot.output2["evlu_amt_smtl"]),
            cash,
            exact(snapshot.output2["loan_amt_smtl"]),
            exact(last["pchs_amt"]),
            exact(last["evlu_pfls_amt"]),
        )
    ]


# ---------------------------------------------------------------------------------------------
# The two answers KIS and one account holder published (../shared/spec/published-answers/), with
# the figures a person reads first, in the views and in the report's headline

PUBLISHED = Path("/work/shared/spec/published-answers")
PORTAL_EXAMPLE = REPLAY_DIR / "kis-portal-example-19-rows.json"
REAL_OUTPUT2 = REPLAY_DIR / "published" / "real-account-2026-08-07-output2-partial.json"


def headline(text: str) -> tuple[str | None, str]:
    """The report's net-assets card: its exact data-value (None if it shows none), its text."""
    card = re.search(r'<div class="card headline" id="headline-net-assets">(.*?)</div>\n', text)
    assert card is not None
    value = re.search(r'data-value="([^"]+)"', card.group(1))
    return (value.group(1) if value else None), card.group(1)


def test_the_replayed_published_answers_are_the_published_files() -> None:
    if not PUBLISHED.is_dir():
        pytest.skip("../shared/spec/published-answers is not beside the project")
    envelope = json.loads(PORTAL_EXAMPLE.read_text())
    [page] = envelope["pages"]
    portal = PUBLISHED / "portal-response-example-19-rows.json"
    assert page["body"] == portal.read_text()
    assert REAL_OUTPUT2.read_bytes() == (PUBLISHED / REAL_OUTPUT2.name).read_bytes()


NET_ASSETS_COLUMNS = "net_assets, total_assets, securities_value, cash, loans"


def once_compacted(data_root: Path, day: date, columns: str) -> list[tuple[Any, ...]]:
    """`columns` of net_asset_history after `day`'s month is compacted (as the first run of
    the next month does): read from the compacted month, not the daily files."""
    next_month = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    compacted = CompactedMonths(data_root)
    compacted.refresh(next_month)
    assert compacted.files("account_summary").daily_months == []
    with duckdb.connect(str(warehouse.build(data_root)), read_only=True) as con:
        return con.execute(f"SELECT {columns} FROM net_asset_history").fetchall()


def test_kis_portal_example_shows_its_net_assets_not_the_securities_only_figure(
    tmp_path: Path,
) -> None:
    """KIS's own example: 1,651,869,889,547 held (mostly foreign currency and a deposit), of
    which 185,550,504 in stocks. nass_tot_amt (순자산총금액) is that stocks-only figure: a view or
    a headline showing it as net assets is what this test is here to catch."""
    data_root = tmp_path / "data"
    snapshot = read_snapshot(land_copy(PORTAL_EXAMPLE, data_root))
    day = snapshot.snapshot_date
    assert tidy.build_days(data_root, [day]).withheld == {}
    warehouse.build(data_root)
    with duckdb.connect(str(data_root / warehouse.FILE_NAME), read_only=True) as con:
        [account] = con.execute(
            "SELECT net_assets, total_assets, securities_value, cash, loans FROM net_asset_history"
        ).fetchall()
        [together] = con.execute(
            "SELECT net_assets, total_assets, securities_value, cash, loans, accounts, "
            "is_complete FROM consolidated_net_assets"
        ).fetchall()
        page = report.render_report(con, day)
    net = Decimal("1651869889547")
    assert account == (net, net, Decimal("185550504"), Decimal("249855300"), Decimal(0))
    assert together == (*account, 1, True)
    assert Decimal(snapshot.output2["nass_tot_amt"]) == Decimal("185550504") < net / 8000
    value, _ = headline(page)
    assert value is not None and Decimal(value) == net
    # once its month is closed and compacted, the stored totals give the same figures
    assert once_compacted(data_root, day, NET_ASSETS_COLUMNS) == [account]


def test_a_real_accounts_output2_alone_says_what_it_can_and_no_more(tmp_path: Path) -> None:
    """One holder posted output2 alone (five fields), with the app's 총자산 139,518 beside it:
    nass_tot_amt 7,292 was the securities only, the rest was cash. Without output1 there is no
    합계 row: the views show total assets and securities, and net assets and cash as unknown
    (NULL), never 7,292; the report's headline says unknown."""
    published = json.loads(REAL_OUTPUT2.read_text())["output2"]
    day, account = date(2026, 8, 7), Account("70000001", "01")
    snapshot = Snapshot(
        account, day, datetime(2026, 8, 7, 6, 0, tzinfo=UTC), [], published, Path("post.json")
    )
    data_root = tmp_path / "data"
    # what output2 alone gives: its row of account_summary (fields it left out are NULL)
    ParquetTables(data_root).write("account_summary", day, flatten.account_summary([snapshot]))
    warehouse.build(data_root)
    with duckdb.connect(str(data_root / warehouse.FILE_NAME), read_only=True) as con:
        [row] = con.execute(
            "SELECT net_assets, total_assets, securities_value, cash, purchase_amount, "
            "net_assets_change_since_first FROM net_asset_history"
        ).fetchall()
        [together] = con.execute(
            "SELECT net_assets, total_assets, securities_value FROM consolidated_net_assets"
        ).fetchall()
        page = report.render_report(con, day)
    assert row == (None, Decimal(139518), Decimal(7292), None, None, None)
    assert together == (None, Decimal(139518), Decimal(7292))
    value, card = headline(page)
    assert value is None and "unknown" in card and "7,292" not in card
    assert 'data-value="139518.00000000"' in page  # total assets, as the app showed
    assert once_compacted(data_root, day, NET_ASSETS_COLUMNS) == [
        (None, Decimal(139518), Decimal(7292), None, None)
    ]


def test_an_answer_without_output1_is_held_back_not_shown_as_net_assets(tmp_path: Path) -> None:
    """The same output2 landed as an answer with an empty output1: the pipeline withholds the
    account (its raw answer kept) rather than show a figure it cannot vouch for."""
    published = json.loads(REAL_OUTPUT2.read_text())["output2"]
    account, day = Account("70000001", "01"), date(2026, 8, 7)
    body = json.dumps({"rt_cd": "0", "msg_cd": "KIOK0530", "output1": [], "output2": published})
    data_root = tmp_path / "data"
    landed = RawLanding(data_root).land(
        BalanceResponse(
            account,
            datetime(2026, 8, 7, 6, 0, tzinfo=UTC),
            (Page(200, "CTRP6548R", "D", body),),
        ),
        day,
        source={},
    )
    result = tidy.build_days(data_root, [day])
    [(held, reason)] = result.withheld.items()
    assert account.id in held and "0 rows" in reason
    assert result.rows("account_summary") == 0
    assert Path(str(landed)).is_file()
