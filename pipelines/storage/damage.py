"""Damaged files of the data root: one error type naming the file, and a note of what was done.

A file that is there but cannot be read whole (cut short, bad magic bytes or footer, a damaged
page, JSON that ends mid-way) raises `DamagedFileError`; every reader of the data root raises
it, so what to do about a damaged file is decided in one place (pipelines/tidy/heal.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import DataError
from pipelines.storage.roots import ObjectPath

#: The reason given for a derived file that is not there at all (rebuilt like a damaged one).
MISSING = "missing"


class DamagedFileError(DataError, ValueError):
    """A file of the data root that exists but cannot be read: its path and why."""

    def __init__(self, path: Path | ObjectPath | str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is damaged: {reason}")


@dataclass(frozen=True)
class Damage:
    """A damaged file found by a run, and what was done about it (for the run's log and the
    asset's metadata)."""

    path: str
    reason: str
    action: str

    @classmethod
    def of(cls, error: DamagedFileError, action: str) -> Damage:
        return cls(str(error.path), error.reason, action)

    def __str__(self) -> str:
        if self.reason == MISSING:
            return f"{self.path} was missing: {self.action}"
        return f"{self.path} was damaged ({self.reason}): {self.action}"
