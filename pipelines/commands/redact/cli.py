"""`kis-redact`: write a redacted copy of a landed raw file or a quarantined answer."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from pipelines.commands.redact.copies import redact
from pipelines.commands.redact.masking import default_key, default_key_path
from pipelines.errors import RedactionError

#: What the command takes, as each refusal of another path says.
WANTED = (
    "give one landed raw file (raw/CTRP6548R/snapshot_date=…/<account>/<time>.json) or one "
    "quarantined answer (raw/quarantine/CTRP6548R/…)"
)
#: The first bytes of a Parquet file.
PARQUET_MAGIC = b"PAR1"


def read_envelope(path: Path) -> Any:
    """The JSON of a landed raw file or a quarantined answer; RedactionError in one line when
    `path` is a directory, a Parquet file, not text or not JSON."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise RedactionError(f"a directory, not a file: {WANTED}") from None
    except FileNotFoundError:
        raise RedactionError(f"no such file: {WANTED}") from None
    except OSError as error:
        raise RedactionError(f"cannot be read ({error.strerror or error}): {WANTED}") from None
    if data.startswith(PARQUET_MAGIC):
        raise RedactionError(
            "a Parquet file (a table derived from raw answers, holding no answer of its own), "
            f"not a landed answer: {WANTED}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RedactionError(f"not UTF-8 text, so not JSON: {WANTED}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise RedactionError(f"not JSON ({error}): {WANTED}") from None


def _secrets_in_environment() -> list[str]:
    """Values of the KIS_* secrets set here (the environment or the settings files): a copy
    must hold none."""
    from pipelines.settings import settings_file_values

    names = ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_PERSONALSECKEY")
    sources = (settings_file_values(), os.environ)
    return sorted({str(values[name]) for values in sources for name in names if values.get(name)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kis-redact",
        description="Write a redacted copy of a landed raw balance file "
        "(data/raw/CTRP6548R/snapshot_date=…/<account>/<time>.json), or of a quarantined answer "
        "(data/raw/quarantine/CTRP6548R/…), to attach to a bug report: "
        "account numbers masked, and with --amounts every amount replaced by a random value "
        "that keeps zeros, signs, decimals and which rows add up to which.",
    )
    parser.add_argument("file", type=Path, help="a landed raw file, or a quarantined answer")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    parser.add_argument(
        "--amounts", action="store_true", help="replace the amounts with random values"
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the random amounts (default: a new one each time)"
    )
    parser.add_argument(
        "--salt",
        help="mask account numbers with this text as the key instead of this machine's own "
        f"(kept in {default_key_path()})",
    )
    args = parser.parse_args(argv)
    try:
        envelope = read_envelope(args.file)
        seed = None
        if args.amounts:
            seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
        key = args.salt.encode() if args.salt is not None else default_key()
        redacted = redact(envelope, key=key, amounts_seed=seed, forbidden=_secrets_in_environment())
    except (OSError, RedactionError) as error:  # OSError: the machine's masking key
        print(f"kis-redact: {args.file}: {error}", file=sys.stderr)
        return 1
    if args.output:
        if args.output.resolve() == args.file.resolve():
            print("kis-redact: the copy would overwrite the landed file", file=sys.stderr)
            return 1
        args.output.write_text(redacted.text() + "\n")
    else:
        sys.stdout.write(redacted.text() + "\n")
    report = [f"account masked as {redacted.account_id}"]
    if seed is not None:
        report.append(f"amounts replaced (seed {seed}); kept:")
        report += [f"  {note}" for note in redacted.notes]
    else:
        report.append("amounts as received (add --amounts to replace them)")
    print("kis-redact: " + "\n".join(report), file=sys.stderr)
    return 0
