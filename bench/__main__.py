"""Run every benchmark and write BENCHMARKS.md (`make bench`)."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import fetch_accounts

HEADER = ["measurement", "median of 3", "floor", "ratio", "EGW00201 refusals"]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, "
        f"Python {platform.python_version()}"
    )


def main() -> int:
    table = fetch_accounts.rows()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        "",
        "## Fetching many accounts on one app key",
        "",
        "Against the simulator enforcing KIS's 20 requests per second per app key; the client "
        "paces itself at 18/s (`KIS_RATE_LIMIT`), so it is never refused. Floor: N/20 s.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "| " + " | ".join("---" for _ in HEADER) + " |",
        *("| " + " | ".join(row) + " |" for row in table),
        "",
    ]
    Path("BENCHMARKS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
