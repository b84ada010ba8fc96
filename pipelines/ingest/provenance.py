"""Where a data root's answers came from: the KIS simulator or a real KIS server. Each landed
answer records it (its envelope's `source`); the root records it once (raw/provenance.json),
and a run refuses a root that holds answers of the other kind, so the two never mix.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.errors import MixedRootError as MixedRootError  # raised here, named here too
from pipelines.kis import protocol
from pipelines.storage.roots import DataRoot, Storage, StoreUnreachableError, open_root

log = logging.getLogger(__name__)

#: The root's record of its kind, beside raw/CTRP6548R/ (never listed as an answer).
RECORD_KEY = "raw/provenance.json"
RECORD_FORMAT = "kis-balance-provenance/1"
SIMULATED, REAL, EMPTY, MIXED = "simulated", "real", "empty", "mixed"
#: A root that could not be read (a full disk, a store that does not answer).
UNKNOWN = "unknown"
ANSWERS = f"raw/{protocol.BALANCE_TR_ID}/"
#: What the simulator's answers look like when their envelope lacks `source.simulated` (a file
#: made by hand or by another tool): the embedded simulator as server, or its two accounts.
SIMULATOR_ACCOUNT_IDS = frozenset({"12345678-01", "12345678-21"})
#: What a root of each kind is for, in the refusal's advice.
DEFAULT_ROOTS = {SIMULATED: "data/demo/", REAL: "data/"}


def kind_of(simulated: bool) -> str:
    return SIMULATED if simulated else REAL


def answer_kind(envelope: Mapping[str, Any]) -> str:
    """SIMULATED or REAL, from a landed answer's envelope: its `source.simulated`, recorded by
    every version of the pipeline; else its server or account (see SIMULATOR_ACCOUNT_IDS)."""
    source = envelope.get("source")
    source = source if isinstance(source, dict) else {}
    if isinstance(source.get("simulated"), bool):
        return kind_of(source["simulated"])
    if source.get("env") in ("sim", "real"):
        return kind_of(source["env"] == "sim")
    server = str(source.get("server", ""))
    simulated = "simulator" in server or envelope.get("account_id") in SIMULATOR_ACCOUNT_IDS
    return kind_of(simulated)


@dataclass(frozen=True)
class RootKind:
    """What a data root holds: EMPTY, SIMULATED, REAL or MIXED, and which accounts of each."""

    kind: str
    #: kind → account ids (from the answers read; empty when the root's record was enough)
    accounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Whether raw/provenance.json says so (else the answers were read).
    recorded: bool = False

    @property
    def is_simulated(self) -> bool | None:
        """True or False for a root of one kind, None for an empty or a mixed one."""
        return {SIMULATED: True, REAL: False}.get(self.kind)


def survey(data_root: DataRoot | Storage) -> RootKind:
    """The root's kind: its record if it has one, else from its answers (the newest of each
    account: a root written before the record existed)."""
    storage = open_root(data_root)
    try:
        record = json.loads(storage.read_bytes(RECORD_KEY))
    except (OSError, ValueError):  # none yet, or unreadable: the answers say it
        record = None
    if isinstance(record, dict) and record.get("kind") in (SIMULATED, REAL):
        return RootKind(record["kind"], recorded=True)
    return _from_answers(storage)


def _from_answers(storage: Storage) -> RootKind:
    newest: dict[str, str] = {}
    for key in storage.files(ANSWERS):
        parts = key.removeprefix(ANSWERS).split("/")
        if len(parts) == 3 and parts[2].endswith(".json"):
            newest[parts[1]] = max(newest.get(parts[1], ""), key)
    accounts: dict[str, list[str]] = defaultdict(list)
    for account, key in sorted(newest.items()):
        try:
            envelope = json.loads(storage.read_bytes(key))
        except (OSError, ValueError):
            continue  # damaged: make verify names it; the account's other answers are alike
        accounts[answer_kind(envelope if isinstance(envelope, dict) else {})].append(account)
    kinds = sorted(accounts)
    kind = EMPTY if not kinds else kinds[0] if len(kinds) == 1 else MIXED
    return RootKind(kind, {k: tuple(v) for k, v in accounts.items()})


def claim(data_root: DataRoot | Storage, *, simulated: bool, server: str) -> RootKind:
    """Make sure answers of this kind may land in the root, and record its kind if it has no
    record yet. MixedRootError (one line: what the root holds, and how to proceed) if it holds
    answers of the other kind. A root that cannot be read or written now is only warned about:
    no answer can land in it either (the fetch keeps them on this machine), and the next run
    checks again before landing them."""
    storage = open_root(data_root)
    wanted = kind_of(simulated)
    try:
        found = survey(storage)
    except (OSError, StoreUnreachableError) as error:
        log.warning("could not tell what %s holds, not checked this time: %s", storage.root, error)
        return RootKind(UNKNOWN)
    if found.kind not in (EMPTY, wanted):
        raise MixedRootError(refusal(storage, wanted, found))
    if found.recorded:
        return found
    record = {
        "format": RECORD_FORMAT,
        "kind": wanted,
        "server": server,
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    try:
        storage.write_bytes(RECORD_KEY, json.dumps(record, indent=1).encode(), overwrite=False)
    except FileExistsError:  # another run recorded it a moment ago
        return claim(storage, simulated=simulated, server=server)
    except (OSError, StoreUnreachableError) as error:
        log.warning("could not record %s in %s (a later run does): %s", wanted, storage.root, error)
        return RootKind(wanted, found.accounts)
    return RootKind(wanted, found.accounts, recorded=True)


def refusal(storage: Storage, wanted: str, found: RootKind) -> str:
    """The one line a run that would land `wanted` answers in a root of `found` prints."""
    root = storage.root
    held = "; ".join(
        f"{kind} account(s) {', '.join(found.accounts[kind])}" for kind in sorted(found.accounts)
    )
    what = f"{found.kind} answers" + (f" ({held})" if held else "")
    if found.kind == MIXED:
        advice = (
            f"set KIS_DATA_ROOT to a new folder, or move the other kind's account folders out "
            f"of {root}/{ANSWERS}snapshot_date=*/, delete {root}/parquet and {root}/compacted, "
            "and run `make repair` (it rebuilds them from raw)"
        )
    else:
        advice = (
            f"set KIS_DATA_ROOT to another folder (by default {wanted} data goes to "
            f"{DEFAULT_ROOTS[wanted]} in the repository), or move the {found.kind} data away "
            f"(e.g. mv {root} {root}-{found.kind})"
        )
    return (
        f"The data root {root} holds {what}; a {'simulator' if wanted == SIMULATED else 'real'}"
        f"-mode run never lands {wanted} answers beside them: {advice}. `make doctor` shows "
        "the root's kind."
    )
