"""`make repair`: rebuild every derived file of the data root that is damaged or missing (a
day's Parquet files from its raw answers, a compacted month from its daily files, the
warehouse), then verify. A damaged raw answer is never rewritten: it is recorded as dealt
with (raw/known-damage/), its account's day keeping what it had.

    python -m pipelines.commands.repair      # KIS_DATA_ROOT (or kis.env), local or s3://

Exit status: as `make verify` after the repair (0 when everything is whole; 3 when it could not
run: the settings, or an object store that did not answer).
"""

from __future__ import annotations

import sys

from pipelines import health
from pipelines.commands.verify import report, run
from pipelines.settings import Settings


def main() -> int:
    def repair(settings: Settings) -> int:
        repaired = health.repair(settings)
        for damage in repaired.healed:
            print(f"repaired: {damage}")
        if not repaired.healed:
            print("repaired: nothing needed rebuilding")
        print(report(repaired.after))
        return repaired.after.exit_code

    return run("repair", repair)


if __name__ == "__main__":
    sys.exit(main())
