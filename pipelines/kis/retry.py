"""Backoff and the retry policy: which KIS faults are tried again, how often, how long apart."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipelines.errors import KisDeadlineError, KisError, KisTransientError, KisUnreachableError
from pipelines.kis.protocol import KisApiError

RATE_LIMITED = "EGW00201"
#: Attempts at a server that refuses connections (or has no address): a couple of seconds of
#: backoff, not the whole budget; a closed port is rarely opened within a minute.
UNREACHABLE_ATTEMPTS = 3


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits up to base·2ⁿ, at most `cap`."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**attempt))
        return (rng or random).uniform(ceiling / 2, ceiling)


def is_transient(error: KisError) -> bool:
    if isinstance(error, KisApiError):
        return error.msg_cd == RATE_LIMITED
    return isinstance(error, KisTransientError)


def give_up(error: KisError, attempt: int, backoff: Backoff, *, answered: bool) -> KisError | None:
    """None to try again after attempt number `attempt` (from 0) failed with `error`; else what
    to raise: `error` itself, or said anew with why no more attempts are made.

    A silent server (nothing at all before the deadline) is not tried again while it has
    answered nothing since the client began (`answered`): each try would wait as long."""
    if not is_transient(error):
        return error
    if isinstance(error, KisDeadlineError) and error.silent and not answered:
        return said_again(
            error,
            f"{error} (not tried again: this server has answered nothing yet, and each try "
            "would wait as long)",
        )
    attempts = backoff.attempts
    if isinstance(error, KisUnreachableError):
        attempts = min(attempts, UNREACHABLE_ATTEMPTS)
    if attempt + 1 < attempts:
        return None
    if isinstance(error, KisApiError):
        return error
    return said_again(error, f"{error} (still failing after {attempts} attempts)")


def said_again(error: KisError, message: str, kind: type[KisError] | None = None) -> KisError:
    """`error` said anew as `kind` (or its own type), with the answer it carried.

    `kind` is required for a KisApiError, whose constructor takes its fields."""
    again = (kind or type(error))(message)
    again.answer = error.answer
    if isinstance(error, KisDeadlineError) and isinstance(again, KisDeadlineError):
        again.silent = error.silent
    return again
