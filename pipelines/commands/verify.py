"""`make verify`: read every raw answer and every Parquet file of the data root, and open every
view; print each damaged or missing file with what depends on it.

    python -m pipelines.commands.verify      # KIS_DATA_ROOT (or kis.env), local or s3://

Exit status: 0 nothing damaged or missing (a damaged raw answer `make repair` has dealt with is
a note); 1 something `make repair` rebuilds; 2 only what it cannot (a damaged raw answer no
repair has dealt with yet, a damaged day with no raw answer left); 3 it could not run (the
settings, or an object store that did not answer).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from pipelines import health
from pipelines.errors import StoreUnreachableError
from pipelines.settings import Settings, SettingsError

#: The exit status when the settings are wrong or the data root cannot be read.
CANNOT_RUN = 3


def report(verified: health.Verified) -> str:
    """Each finding, the notes, and a summary line last."""
    parts = [str(finding) for finding in verified.findings]
    parts += [f"note: {note}" for note in verified.notes]
    return "\n".join([*parts, verified.summary()])


def settings_or_exit(command: str) -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"{command}: {error}", file=sys.stderr)
        sys.exit(CANNOT_RUN)
    print(f"{command}: data root {settings.data_root}, warehouse {settings.warehouse}")
    return settings


def run(command: str, work: Callable[[Settings], int]) -> int:
    """`work` on the settings; exit status 3 if they are wrong, or if the object store did not
    answer (no finding about the data: said in one line, naming the bucket and key)."""
    settings = settings_or_exit(command)
    try:
        return work(settings)
    except StoreUnreachableError as error:
        print(f"{command}: could not read the data root: {error}", file=sys.stderr)
        return CANNOT_RUN


def main() -> int:
    def verify(settings: Settings) -> int:
        verified = health.verify(settings)
        print(report(verified))
        return verified.exit_code

    return run("verify", verify)


if __name__ == "__main__":
    sys.exit(main())
