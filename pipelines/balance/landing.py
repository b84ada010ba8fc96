"""RawLanding: every balance response kept exactly as received, one immutable file per fetch.

Layout: raw/CTRP6548R/snapshot_date=YYYY-MM-DD/<account_id>/<fetched_at UTC>.json. The file
holds the request's parameters, each page's status, tr_id, tr_cont and verbatim body text, and
never a header that carries a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipelines.balance.files import atomic_path
from pipelines.kis import protocol
from pipelines.kis.client import BalanceResponse
from pipelines.kis.protocol import Account

FORMAT = "kis-balance-raw/1"


class SnapshotError(ValueError):
    """A landed response that cannot be turned into tidy rows; the message says where and why."""


@dataclass(frozen=True)
class Snapshot:
    """One account's balance on one day, parsed from a landed file (pages merged)."""

    account: Account
    snapshot_date: date
    fetched_at: datetime
    output1: list[dict[str, Any]]
    output2: dict[str, Any]
    path: Path


class RawLanding:
    def __init__(self, data_root: Path):
        self.root = data_root / "raw" / protocol.BALANCE_TR_ID

    def day_dir(self, snapshot_date: date) -> Path:
        return self.root / f"snapshot_date={snapshot_date.isoformat()}"

    def land(
        self, response: BalanceResponse, snapshot_date: date, *, source: dict[str, Any]
    ) -> Path:
        fetched_at = response.fetched_at
        envelope = {
            "format": FORMAT,
            "tr_id": protocol.BALANCE_TR_ID,
            "account_id": response.account.id,
            "snapshot_date": snapshot_date.isoformat(),
            "fetched_at": fetched_at.isoformat(),
            "source": source,
            "request": {
                "path": protocol.BALANCE_PATH,
                "params": protocol.balance_params(response.account),
            },
            "pages": [
                {"status": p.status, "tr_id": p.tr_id, "tr_cont": p.tr_cont, "body": p.body}
                for p in response.pages
            ],
        }
        name = fetched_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ") + ".json"
        final = self.day_dir(snapshot_date) / response.account.id / name
        with atomic_path(final, overwrite=False) as tmp:
            tmp.write_text(json.dumps(envelope, ensure_ascii=False, indent=1))
        return final

    def latest_files(self, snapshot_date: date) -> list[Path]:
        """The newest landed file of each account for a day, ordered by account."""
        day = self.day_dir(snapshot_date)
        if not day.is_dir():
            return []
        newest = (max(d.glob("*.json"), default=None) for d in sorted(day.iterdir()) if d.is_dir())
        return [path for path in newest if path is not None]

    def answers_by_account(self, snapshot_date: date) -> dict[str, list[Path]]:
        """Every landed file of a day by account, newest first."""
        day = self.day_dir(snapshot_date)
        if not day.is_dir():
            return {}
        answers = {d.name: sorted(d.glob("*.json"), reverse=True) for d in sorted(day.iterdir())}
        return {account: files for account, files in answers.items() if files}

    def all_files(self, snapshot_date: date) -> list[Path]:
        return sorted(self.day_dir(snapshot_date).glob("*/*.json"))


def read_snapshot(path: Path) -> Snapshot:
    """Parse a landed file; pages' output1 rows are concatenated in order."""
    try:
        return _read_snapshot(path)
    except SnapshotError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SnapshotError(f"{path} is not a readable landed balance: {error!r}") from error


def _read_snapshot(path: Path) -> Snapshot:
    envelope = json.loads(path.read_text())
    account_id = envelope.get("account_id", "?")
    if envelope.get("format") != FORMAT:
        raise SnapshotError(f"account {account_id}: {path} is not a {FORMAT} file")
    output1: list[dict[str, Any]] = []
    output2: dict[str, Any] | None = None
    for number, page in enumerate(envelope["pages"], start=1):
        body = json.loads(page["body"])
        rows = protocol.body_key(body, "output1")
        if not isinstance(rows, list):
            raise SnapshotError(
                f"account {account_id}: page {number} of {path} has no output1 array "
                f"(msg_cd={body.get('msg_cd')!r}, msg1={str(body.get('msg1', '')).strip()!r})"
            )
        output1.extend(rows)
        summary = protocol.body_key(body, "output2")
        if isinstance(summary, list):
            summary = summary[0] if summary else None
        if output2 is None and isinstance(summary, dict):
            output2 = summary
    if output2 is None:
        raise SnapshotError(f"account {account_id}: {path} has no output2 object")
    return Snapshot(
        account=Account.parse(account_id),
        snapshot_date=date.fromisoformat(envelope["snapshot_date"]),
        fetched_at=datetime.fromisoformat(envelope["fetched_at"]),
        output1=output1,
        output2=output2,
        path=path,
    )
