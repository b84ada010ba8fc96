"""The run launcher of the instance files: Dagster's DefaultRunLauncher, plus the health check that
run monitoring needs to mark a run whose process died as failed within minutes.

DefaultRunLauncher (each run a process of a code server) has no health check in Dagster 1.13, so
run monitoring only ever ends a STARTED run at its maximum runtime: a run killed together with
its code server (the daemon's service restarted, the user-code container restarted, the OOM
killer, `kill -9` of a terminal's `dg launch`) held today's capture and its app key group's
queue for up to an hour. Here the daemon's run monitoring asks, every `poll_interval_seconds`:

- is the run's process alive? A run records where it runs (`WORKER_TAG`: the machine's boot and
  the PID namespace) when its `kis` resource starts, so there, its process (the PID of its
  RUN_START event, started before it) is seen directly;
- otherwise, does its code server still run it? (`CanCancelExecution`, the call Dagster's own
  termination uses.) A server that answers no has lost it: restarted, or the run's process died.
  A server that does not answer for `unreachable_grace_seconds` (default 60) is taken as gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import ConfigurableClassData, deserialize_value

#: The run tag where a run records where its processes run: "<boot id> <PID namespace>".
WORKER_TAG = "kis/worker_namespace"
DEFAULT_UNREACHABLE_GRACE_SECONDS = 60.0
#: Slack when comparing a process's start with its run's (boot time has whole seconds).
CLOCK_SLACK_SECONDS = 2.0


def _started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if there is no such process or
    it has ended (a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # from field 3: the name before ")" may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: ticks after boot


def namespace() -> str | None:
    """This machine's boot and this process's PID namespace: where a PID means one process
    (None where /proc does not tell)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot} {os.readlink('/proc/self/ns/pid')}"
    except OSError:  # no /proc: not Linux
        return None


def record_worker(context: dg.InitResourceContext) -> None:
    """Tag the run with where it runs, so run monitoring can tell when its process is gone."""
    here, run = namespace(), context.run
    if here and context.instance is not None and run and run.tags.get(WORKER_TAG) != here:
        context.instance.add_run_tags(run.run_id, {WORKER_TAG: here})


def process_alive(pid: int, since: float) -> bool:
    """Whether process `pid` runs and is the one that was running at `since` (not a later
    process that reuses its PID)."""
    started = _started_at(pid)
    return started is not None and started <= since + CLOCK_SLACK_SECONDS


class WatchedRunLauncher(dg.DefaultRunLauncher):
    """DefaultRunLauncher whose runs' health run monitoring can check (see the module)."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        unreachable_grace_seconds: float = DEFAULT_UNREACHABLE_GRACE_SECONDS,
    ):
        super().__init__(inst_data=inst_data)
        self.unreachable_grace_seconds = unreachable_grace_seconds
        #: When each run's code server was first seen not answering, since it last answered.
        self._unreachable_since: dict[str, float] = {}

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "unreachable_grace_seconds": dg.Field(
                float,
                is_required=False,
                default_value=DEFAULT_UNREACHABLE_GRACE_SECONDS,
                description="How long a run's code server may not answer before the run is "
                "taken as dead (when its process cannot be seen from here).",
            )
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WatchedRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        started = self._run_start(run) if run.tags.get(WORKER_TAG) == namespace() else None
        if started is not None:
            pid, since = started
            if process_alive(pid, since):
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"the run's process (pid {pid}) is gone: it was killed"
            )
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:  # run in a process of its own elsewhere: nothing here can tell
            return CheckRunHealthResult(WorkerStatus.RUNNING, "cannot be checked from here")
        where = f"{client.host}:{client.port}" if client.port else str(client.socket)
        try:
            answer = deserialize_value(
                client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id), 10),
                CanCancelExecutionResult,
            )
        except DagsterUserCodeUnreachableError as error:
            since = self._unreachable_since.setdefault(run.run_id, time.time())
            silent = time.time() - since
            if silent < self.unreachable_grace_seconds:
                return CheckRunHealthResult(WorkerStatus.RUNNING, f"{where}: {error}")
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"its code server at {where} has not answered for {silent:.0f} s: {error}",
            )
        self._unreachable_since.pop(run.run_id, None)
        if answer.can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"its code server at {where} no longer runs it (the server restarted, or the "
            "run's process died)",
        )

    def _run_start(self, run: dg.DagsterRun) -> tuple[int, float] | None:
        """The run's process (the PID of its RUN_START event) and when it started the run."""
        events = self._instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
        for entry in events:
            if entry.dagster_event is not None and entry.dagster_event.pid is not None:
                return entry.dagster_event.pid, entry.timestamp
        return None
