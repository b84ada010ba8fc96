"""A workaround for state Dagster leaves behind in a test process."""

from __future__ import annotations


def forget_defs_state_storage() -> None:
    """Drop the defs-state storage Dagster may have left in its context variable: it keeps the
    storage of an instance it entered there and does not always reset it, and once that instance
    is collected, the next in-process load of definitions fails with "Attempted to resolve
    undefined DagsterInstance weakref" (seen in whole `make test` runs, at a point the garbage
    collector chose)."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
