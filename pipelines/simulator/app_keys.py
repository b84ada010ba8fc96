"""Which app keys and secrets the simulator accepts: any (the default) or only the given ones,
as KIS does; and the faults that refuse a key or a secret (bad_appkey, bad_secret)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pipelines.simulator.faults import FaultPlan

#: (msg_cd, msg1) for an app key, and a secret, the server does not accept.
BAD_APP_KEY = ("EGW00103", "유효하지 않은 AppKey입니다.")
BAD_APP_SECRET = ("EGW00105", "유효하지 않은 AppSecret입니다.")
REFUSING_FAULTS = frozenset({"bad_appkey", "bad_secret"})


def refusal(
    faults: FaultPlan,
    target: str,
    known: Mapping[str, str] | None = None,
    app_key: str = "",
    app_secret: str = "",
) -> tuple[str, str] | None:
    """(msg_cd, msg1) when a fault for `target` (`*` for token issuance) refuses the key or
    secret, or `known` (app key → secret) does not hold this pair; None when accepted."""
    fault = faults.take(target, REFUSING_FAULTS)
    if (fault and fault.kind == "bad_appkey") or (known is not None and app_key not in known):
        return BAD_APP_KEY
    if fault or (known is not None and not hmac.compare_digest(known[app_key], app_secret)):
        return BAD_APP_SECRET
    return None


def parse_pairs(pairs: list[str]) -> dict[str, str] | None:
    """`APP_KEY=APP_SECRET` pairs (kis-simulator --app-key) as app key → secret; None for none.
    ValueError for a pair that is not one."""
    split = [pair.partition("=") for pair in pairs]
    if any(not key or not sep or not secret for key, sep, secret in split):
        raise ValueError("--app-key takes APP_KEY=APP_SECRET")
    return {key: secret for key, _, secret in split} if split else None
