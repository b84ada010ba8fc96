"""Backoff: when and how long to wait before retrying a transient KIS fault."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits up to base·2ⁿ, at most `cap`."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**attempt))
        return (rng or random).uniform(ceiling / 2, ceiling)
