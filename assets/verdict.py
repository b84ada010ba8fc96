"""The run's verdict, read from its own materializations: which accounts it fetched without
success or whose answer was withheld (the portfolio report's `every_account_captured` check)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from pipelines.kis.protocol import KisApiError
from pipelines.notify.messages import is_retryable

#: The run's verdict, on its last asset: the day is in the views for every account, or the run
#: fails naming each one that is not, after the others were written.
EVERY_ACCOUNT = "every_account_captured"
RAW = dg.AssetKey("kis_balance_raw")


def run_metadata(context: dg.AssetExecutionContext, key: dg.AssetKey) -> list[dict[str, Any]]:
    """Metadata of every materialization of `key` in this run, as plain values."""
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return [
        {name: value.value for name, value in materialization.metadata.items()}
        for record in records
        if (materialization := record.event_log_entry.asset_materialization) is not None
        and materialization.asset_key == key
    ]


def failed_accounts_metadata(
    failures: dict[str, Exception], *, one_day: bool
) -> dict[str, dict[str, Any]]:
    """The raw asset's `failed_accounts`: by account ("YYYY-MM-DD account" in a range of
    days) the error, and the server's msg_cd and msg1 when it answered."""
    return {
        key.split(" ", 1)[1] if one_day else key: {
            **(
                {"msg_cd": error.msg_cd, "msg1": error.msg1}
                if isinstance(error, KisApiError)
                else {}
            ),
            "error": str(error),
            # whether another attempt in the window may succeed (notifications tell at once
            # only of what it cannot fix)
            "retryable": is_retryable(error),
        }
        for key, error in failures.items()
    }


def run_verdict(context: dg.AssetExecutionContext) -> dict[str, dict[str, Any]]:
    """Accounts this run fetched without success, or whose answer was withheld: account (or
    "YYYY-MM-DD account" in a range) → what the server or the checks said."""
    verdict: dict[str, dict[str, Any]] = {}
    for metadata in run_metadata(context, RAW):
        verdict.update(metadata.get("failed_accounts") or {})
    for metadata in run_metadata(context, dg.AssetKey("asset_categories")):
        for key, why in (metadata.get("withheld_accounts") or {}).items():
            label = key.split(" ", 1)[1] if len(context.partition_keys) == 1 else key
            verdict.setdefault(label, {"withheld": why})
    return verdict


def reason(what: dict[str, Any]) -> str:
    """What the server said (msg_cd and msg1 are in the error's text) or why it was withheld."""
    return str(what.get("withheld") or what.get("error"))
