"""RawLanding: every balance response kept exactly as received, one immutable file per fetch;
answers that are not a success kept apart in quarantine; answers the data root refused kept
on this machine (PendingAnswers) until a later run lands them.

Layout: raw/CTRP6548R/snapshot_date=YYYY-MM-DD/<account_id>/<fetched_at UTC>.json. The file
holds the request's parameters, each page's status, tr_id, tr_cont and verbatim body text, and
never a header that carries a secret. Quarantine:
raw/quarantine/CTRP6548R/snapshot_date=YYYY-MM-DD/<account_id>/<received_at UTC>.json, never
listed as an answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import KisError, SnapshotError, StoreUnreachableError
from pipelines.kis import protocol
from pipelines.kis.client import SECRET_REMOVED, BalanceResponse
from pipelines.kis.protocol import Account
from pipelines.storage.damage import DamagedFileError
from pipelines.storage.files import atomic_path
from pipelines.storage.roots import DataRoot, Location, Storage, open_root

log = logging.getLogger(__name__)

FORMAT = "kis-balance-raw/1"
QUARANTINE_FORMAT = "kis-balance-quarantine/1"
#: Where answers that are not a success go: beside raw/CTRP6548R/, never under it.
QUARANTINE_ROOT = f"raw/quarantine/{protocol.BALANCE_TR_ID}"


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
        key, data = self.prepare(response, snapshot_date, source=source)
        return self.storage.write_bytes(key, data, overwrite=False)

    def prepare(
        self, response: BalanceResponse, snapshot_date: date, *, source: dict[str, Any]
    ) -> tuple[str, bytes]:
        """The key and the bytes `land` writes."""
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
        key = f"{self._day_key(snapshot_date)}/{response.account.id}/{_file_name(fetched_at)}"
        text = json.dumps(envelope, ensure_ascii=False, indent=1)
        return key, text.encode("utf-8")

    # -- quarantine -----------------------------------------------------------------------
    def quarantine_dir(self, snapshot_date: date) -> Location:
        return self.storage.location(f"{QUARANTINE_ROOT}/snapshot_date={snapshot_date.isoformat()}")

    def quarantine(
        self,
        account: Account,
        snapshot_date: date,
        error: KisError,
        *,
        source: dict[str, Any],
        secrets: Iterable[str] = (),
    ) -> Location:
        """Keep the answer that failed `account` (error.answer) with why, as a
        kis-balance-quarantine/1 file: its status, the allow-listed headers and the body (text,
        or base64 when it is not UTF-8). Any of `secrets` a server sent back is replaced."""
        answer = error.answer
        if answer is None:
            raise ValueError(f"account {account.id}: the error carries no answer to keep")
        scrub = [value.encode() for value in secrets if len(value) >= 8]
        body, removed = _scrubbed(answer.body, scrub)
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode("ascii"), "base64"
        headers = {}
        for name, value in answer.kept_headers().items():
            clean, count = _scrubbed(value.encode("utf-8", "replace"), scrub)
            headers[name], removed = clean.decode("utf-8", "replace"), removed + count
        reason, count = _scrubbed(str(error).encode(), scrub)
        envelope: dict[str, Any] = {
            "format": QUARANTINE_FORMAT,
            "tr_id": protocol.BALANCE_TR_ID,
            "account_id": account.id,
            "snapshot_date": snapshot_date.isoformat(),
            "fetched_at": answer.received_at.isoformat(),
            "source": source,
            "request": {"path": protocol.BALANCE_PATH, "params": protocol.balance_params(account)},
            "reason": reason.decode(),
            "error": type(error).__name__,
            "answer": {
                "status": answer.status,
                "headers": headers,
                "body_encoding": encoding,
                "body": text,
                "body_bytes": len(answer.body),
                "complete": answer.complete,
            },
        }
        if answer.decoding_error:
            envelope["answer"]["decoding_error"] = answer.decoding_error
        if removed + count:
            envelope["secrets_removed"] = removed + count
        day = f"{QUARANTINE_ROOT}/snapshot_date={snapshot_date.isoformat()}"
        key = f"{day}/{account.id}/{_file_name(answer.received_at)}"
        data = json.dumps(envelope, ensure_ascii=False, indent=1).encode("utf-8")
        return self.storage.write_bytes(key, data, overwrite=False)

    def quarantined(self, snapshot_date: date) -> list[Location]:
        """Every quarantined answer of a day, by account and time."""
        day = f"{QUARANTINE_ROOT}/snapshot_date={snapshot_date.isoformat()}/"
        return [self.storage.location(key) for key in sorted(self.storage.files(day))]

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


def _file_name(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ") + ".json"


def _scrubbed(data: bytes, secrets: list[bytes]) -> tuple[bytes, int]:
    """`data` with every secret replaced by SECRET_REMOVED, and how many were."""
    count = 0
    for secret in secrets:
        count += data.count(secret)
        data = data.replace(secret, SECRET_REMOVED.encode())
    return data, count


class PendingAnswers:
    """Answers fetched but refused by the data root (a full disk, a store that did not answer),
    kept on this machine until a later run lands them under the same key.

    One folder per data root under $XDG_STATE_HOME/kis-balance-history/pending/ (default
    ~/.local/state/...), readable by you only; each file is exactly the bytes `land` wrote."""

    def __init__(self, storage: Storage, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self.storage = storage
        root = str(storage.absolute().root)
        state = environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
        digest = hashlib.sha256(root.encode()).hexdigest()[:16]
        self.directory = Path(state, "kis-balance-history", "pending", digest)
        self._root_text = root

    def keep(self, key: str, data: bytes) -> Path:
        """Write `data` for `key` here (whole, or not at all)."""
        with atomic_path(self.directory / "ROOT") as tmp:  # whose answers these are (0600)
            tmp.write_text(self._root_text + "\n")
        path = self.directory / key
        with atomic_path(path, overwrite=False) as tmp:  # a 0600 file
            tmp.write_bytes(data)
        return path

    def keys(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(
            path.relative_to(self.directory).as_posix()
            for path in self.directory.rglob("*.json")
            if not path.name.startswith(".")
        )

    def land_all(self) -> list[Location]:
        """Land every kept answer under its key and forget it. If the root still refuses one,
        the rest stay too (a warning, never an error: the run goes on and fetches as usual)."""
        landed: list[Location] = []
        keys = self.keys()
        for number, key in enumerate(keys):
            path = self.directory / key
            try:
                landed.append(self.storage.write_bytes(key, path.read_bytes(), overwrite=False))
            except FileExistsError:
                pass  # landed before (by a run that died before forgetting it)
            except (OSError, StoreUnreachableError) as error:
                log.warning(
                    "%d fetched answer(s) are still kept in %s, not landed: %s: %s",
                    len(keys) - number,
                    self.directory,
                    self.storage.location(key),
                    error,
                )
                break
            path.unlink()
            log.warning("landed %s from %s, where a run had to keep it", key, self.directory)
        return landed


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
