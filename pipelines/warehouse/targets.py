"""Target allocation: asset class → target weight and tolerance band, from a TOML file.

[asset_class.equity]
target_pct = 40
tolerance_pct = 5
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipelines.errors import TargetsError
from pipelines.kis.layouts import ASSET_CLASSES

CLASSES = sorted(set(ASSET_CLASSES.values()) - {"total"})


@dataclass(frozen=True)
class Target:
    asset_class: str
    target_pct: Decimal
    tolerance_pct: Decimal


def _percent(value: object, where: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise TargetsError(f"{where}: {value!r} is not a number") from None
    if not 0 <= number <= 100:
        raise TargetsError(f"{where}: {value!r} is not a percentage between 0 and 100")
    return number


def load(path: Path) -> list[Target]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise TargetsError(f"targets file {path}: {error}") from None
    entries = data.get("asset_class")
    if not isinstance(entries, dict) or not entries:
        raise TargetsError(f"targets file {path}: expected [asset_class.<name>] tables")
    targets = []
    for name, entry in entries.items():
        where = f"targets file {path}, [asset_class.{name}]"
        if name not in CLASSES:
            raise TargetsError(f"{where}: unknown asset class; known: {', '.join(CLASSES)}")
        if not isinstance(entry, dict) or "target_pct" not in entry:
            raise TargetsError(f"{where}: needs target_pct (and optionally tolerance_pct)")
        targets.append(
            Target(
                name,
                _percent(entry["target_pct"], f"{where} target_pct"),
                _percent(entry.get("tolerance_pct", 5), f"{where} tolerance_pct"),
            )
        )
    total = sum((t.target_pct for t in targets), Decimal(0))
    if abs(total - 100) > Decimal("0.01"):
        raise TargetsError(f"targets file {path}: target_pct values add up to {total}, not 100")
    return targets
