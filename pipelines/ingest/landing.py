"""RawLanding: every balance response kept exactly as received, one immutable file per fetch.

Layout: raw/CTRP6548R/snapshot_date=YYYY-MM-DD/<account_id>/<fetched_at UTC>.json. The file
holds the request's parameters, each page's status, tr_id, tr_cont and verbatim body text, and
never a header that carries a secret.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipelines.kis import protocol
from pipelines.kis.client import BalanceResponse
from pipelines.kis.protocol import Account
from pipelines.storage.damage import DamagedFileError
from pipelines.storage.roots import DataRoot, Location, Storage, open_root

FORMAT = "kis-balance-raw/1"


class SnapshotError(ValueError):
    """A landed response that cannot be turned into tidy rows; the message says where and why."""


class DamagedRawError(SnapshotError, DamagedFileError):
    """A landed file that cannot be read as what landing wrote (cut short, not UTF-8 or JSON, not
    a kis-balance-raw/1 envelope): the file is damaged, whatever the server had answered."""

    def __init__(self, path: Location, reason: str):
        DamagedFileError.__init__(self, path, reason)


@dataclass(frozen=True)
class Snapshot:
    """One account's balance on one day, parsed from a landed file (pages merged)."""

    account: Account
    snapshot_date: date
    fetched_at: datetime
    output1: list[dict[str, Any]]
    output2: dict[str, Any]
    path: Location


class RawLanding:
    def __init__(self, data_root: DataRoot | Storage):
        self.storage = open_root(data_root)
        self.root = self.storage.location(f"raw/{protocol.BALANCE_TR_ID}")

    def _day_key(self, snapshot_date: date) -> str:
        return f"raw/{protocol.BALANCE_TR_ID}/snapshot_date={snapshot_date.isoformat()}"

    def children(self) -> list[str]:
        """The names under raw/CTRP6548R/ (snapshot_date=… folders), sorted."""
        return self.storage.children(f"raw/{protocol.BALANCE_TR_ID}")

    def day_dir(self, snapshot_date: date) -> Location:
        return self.storage.location(self._day_key(snapshot_date))

    def land(
        self, response: BalanceResponse, snapshot_date: date, *, source: dict[str, Any]
    ) -> Location:
        """Write the answer under a name of its own; an existing name is never replaced
        (FileExistsError), so two writers can never swap a landed answer."""
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
        key = f"{self._day_key(snapshot_date)}/{response.account.id}/{name}"
        text = json.dumps(envelope, ensure_ascii=False, indent=1)
        return self.storage.write_bytes(key, text.encode("utf-8"), overwrite=False)

    def _keys_by_account(self, snapshot_date: date) -> dict[str, list[str]]:
        """Keys of every landed file of a day by account (in account order), newest first."""
        day = self._day_key(snapshot_date) + "/"
        found: dict[str, list[str]] = defaultdict(list)
        for key in self.storage.files(day):
            account, _, name = key.removeprefix(day).partition("/")
            if name.endswith(".json") and "/" not in name:
                found[account].append(key)
        return {account: sorted(found[account], reverse=True) for account in sorted(found)}

    def latest_files(self, snapshot_date: date) -> list[Location]:
        """The newest landed file of each account for a day, ordered by account."""
        return [
            self.storage.location(keys[0]) for keys in self._keys_by_account(snapshot_date).values()
        ]

    def answers_by_account(self, snapshot_date: date) -> dict[str, list[Location]]:
        """Every landed file of a day by account, newest first."""
        return {
            account: [self.storage.location(key) for key in keys]
            for account, keys in self._keys_by_account(snapshot_date).items()
        }

    def all_files(self, snapshot_date: date) -> list[Location]:
        return [
            self.storage.location(key)
            for keys in self._keys_by_account(snapshot_date).values()
            for key in reversed(keys)
        ]


def read_snapshot(path: Location) -> Snapshot:
    """Parse a landed file; pages' output1 rows are concatenated in order. DamagedRawError if
    the file itself cannot be read, SnapshotError if the answer in it has no rows to take."""
    try:
        return _read_snapshot(path, read_envelope(path))
    except SnapshotError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SnapshotError(f"{path} is not a readable landed balance: {error!r}") from error


#: What every envelope landing writes holds, and of what type.
ENVELOPE_FIELDS = {
    "format": str,
    "account_id": str,
    "snapshot_date": str,
    "fetched_at": str,
    "pages": list,
}


def read_envelope(path: Location) -> dict[str, Any]:
    """The landed file's envelope as written by `land`; DamagedRawError (naming the file) if it
    cannot be read as one. FileNotFoundError if it is not there."""
    try:
        envelope = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedRawError(path, f"not readable as JSON ({error})") from error
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise DamagedRawError(path, f"not a {FORMAT} envelope")
    for name, kind in ENVELOPE_FIELDS.items():
        if not isinstance(envelope.get(name), kind):
            raise DamagedRawError(path, f"its {name!r} is missing or not a {kind.__name__}")
    if not all(
        isinstance(page, dict) and isinstance(page.get("body"), str) for page in envelope["pages"]
    ):
        raise DamagedRawError(path, "a page without its body text")
    return envelope


def _read_snapshot(path: Location, envelope: dict[str, Any]) -> Snapshot:
    account_id = envelope["account_id"]
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
