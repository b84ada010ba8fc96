"""The daily digest's numbers, read from the warehouse's views (net_asset_history,
consolidated_net_assets, consolidated_allocation, missed_captures)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb

from pipelines.notify.messages import Digest
from pipelines.storage.roots import DataRoot
from pipelines.warehouse import warehouse
from pipelines.warehouse.warehouse import on_day

#: How many allocation moves the digest lists.
MOVES = 3


def read_digest(data_root: DataRoot, path: Path | None, day: date, report: str) -> Digest:
    def work(con: duckdb.DuckDBPyConnection) -> Digest:
        accounts = con.execute(
            on_day(
                "SELECT account_id, net_assets, net_assets_change FROM net_asset_history "
                "WHERE snapshot_date = ? ORDER BY account_id",
                day,
            )
        ).fetchall()
        total = con.execute(
            on_day(
                "SELECT net_assets, net_assets_change, net_assets_change_note "
                "FROM consolidated_net_assets WHERE snapshot_date = ?",
                day,
            )
        ).fetchone() or (None, None, None)
        moves = con.execute(
            on_day(
                f"""
            WITH today AS (
                SELECT asset_class, weight_pct FROM consolidated_allocation
                WHERE snapshot_date = ?
            ),
            before AS (
                SELECT asset_class, weight_pct FROM consolidated_allocation
                WHERE snapshot_date = (SELECT max(snapshot_date) FROM consolidated_allocation
                                       WHERE snapshot_date < ?)
            )
            SELECT coalesce(t.asset_class, b.asset_class),
                   coalesce(t.weight_pct, 0),
                   coalesce(t.weight_pct, 0) - coalesce(b.weight_pct, 0) AS delta
            FROM today t FULL JOIN before b USING (asset_class)
            WHERE EXISTS (SELECT 1 FROM before)
            ORDER BY abs(delta) DESC, 1
            LIMIT {MOVES}
            """,
                day,
            )
        ).fetchall()
        missed = con.execute(
            on_day(
                "SELECT capture_day, account_id FROM missed_captures "
                f"WHERE capture_day >= DATE '{day.replace(day=1)}' AND capture_day <= ? "
                "ORDER BY 1, 2",
                day,
            )
        ).fetchall()
        return Digest(
            day=day,
            accounts=[(a, n, c) for a, n, c in accounts],
            net_assets=total[0],
            net_assets_change=total[1],
            change_note=total[2],
            moves=[(name, Decimal(w), Decimal(d)) for name, w, d in moves if d != 0],
            missed=[(d, a) for d, a in missed],
            report=report,
        )

    return warehouse.read(data_root, path, work)
