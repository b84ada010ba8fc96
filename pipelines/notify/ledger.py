"""The ledger of what was told: at most once per cause and day, in one small JSON file written
atomically (kept on this machine, beside Dagster's instance)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipelines.storage.files import atomic_path, locked

#: Days kept in the file; older ones are dropped when it is written.
KEEP_DAYS = 45


class Ledger:
    def __init__(self, path: Path):
        self.path = path

    def claim(self, day: date, cause: str) -> bool:
        """True (and recorded) the first time `cause` is claimed for `day`, else False.

        Claimed before the message goes out: a process that dies while sending never sends
        it twice.
        """
        with locked(self.path.with_name(self.path.name + ".lock")):
            entries = self._read()
            told = entries.setdefault(day.isoformat(), {})
            if cause in told:
                return False
            told[cause] = datetime.now(UTC).isoformat(timespec="seconds")
            oldest = (day - timedelta(days=KEEP_DAYS)).isoformat()
            self._write({d: c for d, c in entries.items() if d >= oldest})
            return True

    def told(self, day: date) -> dict[str, str]:
        """cause → when it was claimed (UTC), for the day."""
        return dict(self._read().get(day.isoformat(), {}))

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:  # a damaged ledger: start again rather than stop telling
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, dict[str, str]]) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
