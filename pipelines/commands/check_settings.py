"""`make run`'s first step: read and check the KIS_* settings; when they are wrong, say so in
one line (the traceback only with --verbose) and exit 2 before Dagster starts.

    python -m pipelines.commands.check_settings [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import traceback

from pipelines.settings import Settings, SettingsError

#: The exit status when the settings are wrong.
INVALID = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_settings", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="the traceback of an error too")
    args = parser.parse_args(argv)
    try:
        Settings.from_env()
    except SettingsError as error:
        if args.verbose:
            traceback.print_exc()
        print(f"settings: {error}", file=sys.stderr)
        return INVALID
    return 0


if __name__ == "__main__":
    sys.exit(main())
