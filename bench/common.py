"""Shared helpers of the benchmarks: medians, the markdown table, pass/fail of a target."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence

#: Columns of every measurement table written by the modules other than fetch_accounts.
HEADER = ["measurement", "median", "floor / baseline", "ratio", "target", "notes"]


def quick() -> bool:
    """BENCH_QUICK=1: smaller sizes everywhere (see bench/__main__.py)."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def env_int(name: str, default: int, quick_default: int) -> int:
    value = os.environ.get(name)
    if value:
        return int(value)
    return quick_default if quick() else default


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def seconds(value: float) -> str:
    if value < 0.1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
