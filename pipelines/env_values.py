"""Numbers read from KIS_* variables, for every layer that reads one: each wrong value is a
one-line error naming the variable, what was expected and an example."""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.errors import EnvValueError


def seconds(environ: Mapping[str, str], name: str, default: float, *, maximum: float) -> float:
    """Seconds, more than 0 and at most `maximum` (decimals allowed); `default` when unset."""
    text = environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= maximum:  # also refuses nan and inf
        raise EnvValueError(
            f"{name}={text!r}: expected seconds, more than 0 and at most {maximum:g} "
            f"(decimals allowed), e.g. {default:g}"
        )
    return value


def count(environ: Mapping[str, str], name: str, default: int, *, maximum: int) -> int:
    """A whole number from 1 to `maximum`; `default` when unset."""
    text = environ.get(name)
    if not text:
        return default
    if not (text.strip().isdigit() and 1 <= int(text) <= maximum):
        raise EnvValueError(f"{name}={text!r}: expected a whole number from 1 to {maximum}")
    return int(text)
