"""Redacted real (and simulated) answers in tests/replay/, replayed through the whole tidy path.

Each file is put where the fetch step lands it, then read_snapshot → flatten → checks → Parquet
→ warehouse views, and every value in the views is compared with the file's text as a Decimal.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.ingest.landing import RawLanding, read_snapshot
from pipelines.kis import layouts
from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS
from pipelines.tidy import build as tidy
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
            "SELECT net_assets FROM net_asset_history WHERE account_id = ? AND snapshot_date = ?",
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
    assert history == [(exact(snapshot.output2["nass_tot_amt"]),)]
