"""The `repair_history` job: `make repair` from the Dagster UI (pipelines/health.py does it);
and the sweep of what killed runs left, at the start of a run."""

import dagster as dg

from assets.resources import KisResource
from pipelines import health
from pipelines.settings import Settings
from pipelines.storage.roots import open_root

#: Data roots this process has swept: once per run (its process) is enough.
_SWEPT: set[str] = set()


def sweep_leftovers(context: dg.AssetExecutionContext, settings: Settings) -> None:
    """Remove what killed runs left in the data root (staged files; in object storage, uploads
    never completed) once older than any run can live; never fails the run."""
    root = str(settings.data_root)
    if root in _SWEPT:
        return
    _SWEPT.add(root)
    try:
        removed = open_root(settings.data_root).sweep()
    except Exception as error:  # e.g. a store that refuses to list multipart uploads
        context.log.warning(f"could not sweep the leftovers of killed runs in {root}: {error}")
        return
    if removed:
        context.log.info(
            f"removed {len(removed)} leftover(s) of killed runs: {', '.join(removed[:10])}"
            + (" …" if len(removed) > 10 else "")
        )


@dg.op(
    description="Rebuild every derived file of KIS_DATA_ROOT that is damaged or missing (a "
    "day's Parquet files from its raw answers, a compacted month from its daily files, the "
    "warehouse), then verify every raw answer and Parquet file. A damaged raw answer is never "
    "rewritten: it is reported and recorded as dealt with, its account's day keeping what it had."
)
def repair_data_root(context: dg.OpExecutionContext, kis: KisResource) -> None:
    settings = kis.settings()
    repaired = health.repair(settings)
    for damage in repaired.healed:
        context.log.warning(f"repaired: {damage}")
    known = [str(f) for f in repaired.before.findings if f.raw_key is not None]
    for finding in known:
        context.log.warning(f"kept as it is, recorded as dealt with: {finding}")
    for note in repaired.after.notes:
        context.log.info(note)
    metadata = {
        "repaired": [str(damage) for damage in repaired.healed],
        "found_before": [str(finding) for finding in repaired.before.findings],
        "damaged_raw_answers": known,
        "still_damaged": [str(finding) for finding in repaired.after.findings],
    }
    if repaired.after.findings:
        raise dg.Failure(
            description=repaired.after.summary()
            + "\n"
            + "\n".join(str(finding) for finding in repaired.after.findings),
            metadata=metadata,
            allow_retries=False,
        )
    context.log.info(repaired.after.summary())
    context.add_output_metadata(metadata)


@dg.job(
    description="make repair: rebuild what is damaged or missing in the data root (from raw "
    "answers, the source of truth), then verify it. Damaged raw answers are reported and "
    "recorded, never rewritten."
)
def repair_history() -> None:
    repair_data_root()
