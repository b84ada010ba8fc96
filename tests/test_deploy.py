"""The deployment files: deploy/dagster.yaml on a real PostgreSQL, the run queue, compose and Helm.

No container engine runs here, so the compose services' commands run as local processes
against a throwaway PostgreSQL server (tests/postgres.py) and the embedded KIS simulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import grpc
import pytest
import requests
import yaml
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assets.automation import TAG_BUILD, TAG_KEY_GROUP
from assets.run_launcher import WORKER_TAG
from pipelines.definitions import defs
from pipelines.ingest.fetch import today_in_seoul
from tests.postgres import PostgresServer, free_port
from tests.readme import documentation

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
GROUP_TAG = TAG_KEY_GROUP
DAGSTER_SERVICES = ("user_code", "webserver", "daemon")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "docker-compose.yaml")


def env_references(config: object) -> set[str]:
    """Every variable a Dagster YAML file reads with `{env: NAME}`."""
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return {config["env"]}
        return set().union(*(env_references(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(*(env_references(value) for value in config))
    return set()


def local_command(service: str, *, port: int | None = None) -> list[str]:
    """A compose service's command as a local process: our .venv, loopback, a free port."""
    command = list(compose()["services"][service]["command"])
    command[0] = str(BIN / command[0])
    for flag, value in (("-h", "127.0.0.1"), ("-p", str(port))):
        if flag in command and port is not None:
            command[command.index(flag) + 1] = value
    return command


def run_failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What a run's failure events say, for an assertion message."""
    texts = []
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is not None and entry.dagster_event.is_failure:
            error = getattr(entry.dagster_event.event_specific_data, "error", None)
            texts.append(f"{entry.step_key}: {error.message if error else entry.user_message}")
    return texts


@dataclass
class Deployment:
    """deploy/dagster.yaml in a DAGSTER_HOME of its own, on a fresh database of the server."""

    home: Path
    server: PostgresServer
    db_name: str
    logs: Path

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def sql(self, statement: str) -> list[tuple]:
        connection = self.server.connect(self.db_name)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall())
        finally:
            connection.close()

    @contextlib.contextmanager
    def process(self, command: list[str], name: str) -> Iterator[subprocess.Popen[bytes]]:
        """A process in a session of its own, killed with its children when the block ends."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            yield proc
        finally:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue

    @contextlib.contextmanager
    def code_server(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
        """compose's user_code command on a free loopback port, with the workspace pointed at it."""
        port = free_port()
        monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "127.0.0.1")
        monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", str(port))
        with self.process(local_command("user_code", port=port), "user_code") as proc:
            wait_for_grpc(port, proc, self.logs / "user_code.log")
            yield port


def wait_for_grpc(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"code server not serving after {timeout}s: {log.read_text()[-3000:]}")


@pytest.fixture
def deployment(
    monkeypatch: pytest.MonkeyPatch,
    postgres_server: PostgresServer,
    postgres_db: str,
    tmp_path: Path,
) -> Deployment:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in postgres_server.dagster_env(postgres_db).items():
        monkeypatch.setenv(name, value)
    logs = tmp_path / "logs"
    logs.mkdir()
    return Deployment(home=home, server=postgres_server, db_name=postgres_db, logs=logs)


def test_production_instance_keeps_everything_in_postgres(deployment: Deployment) -> None:
    with deployment.instance() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert queue.max_concurrent_runs >= 2
        assert queue.tag_concurrency_limits == [
            {"key": GROUP_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": TAG_BUILD, "limit": 1},
        ]
        assert not instance.telemetry_enabled
        assert instance.get_settings("python_logs")["managed_python_loggers"] == ["pipelines"]
    tables = {row[0] for row in deployment.sql("SELECT tablename FROM pg_tables")}
    assert {"runs", "event_logs", "jobs", "instigators"} <= tables


def test_production_instance_needs_its_postgres_variables(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    with pytest.raises(Exception, match="DAGSTER_PG_PASSWORD"):
        deployment.instance()


def test_pipeline_runs_from_the_shell_through_the_postgres_instance(
    deployment: Deployment, isolated_env: Path
) -> None:
    today = today_in_seoul().isoformat()
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines.definitions"]
    completed = subprocess.run(
        [*command, "--select", "*", "--partition", today],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "DeprecationWarning" not in completed.stderr

    graph = defs.resolve_asset_graph()
    asset_keys = graph.get_all_asset_keys()
    with deployment.instance() as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == today
        for key in asset_keys:
            event = instance.get_latest_materialization_event(key)
            assert event is not None, key
            assert event.run_id == run.run_id
            assert event.dagster_event is not None
            assert event.dagster_event.partition == today
    # the same facts, straight from PostgreSQL's tables
    assert deployment.sql(
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
    ) == [(len(asset_keys),)]
    assert deployment.sql(
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION'"
    ) == [(len(graph.asset_check_keys),)]
    with duckdb.connect(str(isolated_env / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM account_summary").fetchall() == [(2,)]


def test_compose_services_as_local_processes_queue_runs_per_app_key_group(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose's user_code, webserver and daemon commands on the PostgreSQL instance.

    The webserver loads the code server through deploy/workspace.yaml; three runs submitted
    through it wait in the queue until the daemon starts, then key group a's two runs go one
    after the other and group b's beside them.
    """
    today = today_in_seoul().isoformat()
    # 40 accounts on one app key take 2 s at KIS's pace: long enough to see runs overlap
    accounts = [f"{10000000 + n}-01" for n in range(40)]
    monkeypatch.setenv("KIS_ACCOUNTS", ",".join(accounts))
    web_port = free_port()
    with (
        deployment.code_server(monkeypatch),
        deployment.process(local_command("webserver", port=web_port), "webserver") as webserver,
        deployment.instance() as instance,
    ):
        wait_for_http(f"http://127.0.0.1:{web_port}/server_info", webserver)
        location = workspace_location(web_port)
        assert location["name"] == "kis_balance_history"
        assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
        runs = {"a-first": "a", "a-second": "a", "b-only": "b"}
        for name, group in runs.items():
            launch_run(web_port, {GROUP_TAG: group, "dagster/partition": today, "test": name})
        assert [run.status for run in instance.get_runs()] == [dg.DagsterRunStatus.QUEUED] * 3

        with deployment.process(local_command("daemon"), "daemon"):
            deadline = time.monotonic() + 150
            while not all(run.is_finished for run in instance.get_runs()):
                assert time.monotonic() < deadline, "runs still not finished after 150 s"
                time.sleep(0.5)
        records = {record.dagster_run.tags["test"]: record for record in instance.get_run_records()}
        failures = {
            name: run_failures(instance, record.dagster_run.run_id)
            for name, record in records.items()
            if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS
        }
    assert not failures, (failures, (deployment.logs / "daemon.log").read_text()[-3000:])
    span = {name: (r.start_time or 0.0, r.end_time or 0.0) for name, r in records.items()}
    first, second = sorted([span["a-first"], span["a-second"]])
    assert first[1] <= second[0], f"group a's runs overlapped: {span}"
    # group b did not wait for group a: it ran while one of a's runs was in progress
    b_start, b_end = span["b-only"]
    assert any(start < b_end and b_start < end for start, end in (first, second)), span


def test_a_run_killed_with_its_code_server_frees_its_key_group_within_a_minute(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose's user_code, webserver and daemon on the PostgreSQL instance, run monitoring
    polling every 2 s instead of 30. Two runs of key group a: the first is killed with the
    user-code server that runs it (as a restart of that container does) and the server comes
    back. The first is FAILURE soon after and the second starts; before, the first stayed
    STARTED and held group a's queue for up to an hour.
    """
    instance_file = deployment.home / "dagster.yaml"
    shipped = instance_file.read_text()
    assert "poll_interval_seconds: 30" in shipped and "class: WatchedRunLauncher" in shipped
    instance_file.write_text(
        shipped.replace("poll_interval_seconds: 30", "poll_interval_seconds: 2")
    )
    monkeypatch.setenv("KIS_SIM_FAULTS", "*:hang=600")  # every run waits on KIS until killed
    today = today_in_seoul().isoformat()
    web_port, port = free_port(), free_port()
    monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", str(port))
    with contextlib.ExitStack() as stack:
        user_code = stack.enter_context(
            deployment.process(local_command("user_code", port=port), "user_code")
        )
        wait_for_grpc(port, user_code, deployment.logs / "user_code.log")
        webserver = stack.enter_context(
            deployment.process(local_command("webserver", port=web_port), "webserver")
        )
        wait_for_http(f"http://127.0.0.1:{web_port}/server_info", webserver)
        first, second = (
            launch_run(web_port, {GROUP_TAG: "a", "dagster/partition": today}) for _ in range(2)
        )
        stack.enter_context(deployment.process(local_command("daemon"), "daemon"))
        instance = stack.enter_context(deployment.instance())

        def status(run_id: str) -> dg.DagsterRunStatus:
            run = instance.get_run_by_id(run_id)
            assert run is not None
            return run.status

        def wait(what: str, done: Any, seconds: float) -> float:
            start = time.monotonic()
            while not done():
                assert time.monotonic() - start < seconds, (
                    f"{what}: not within {seconds} s",
                    (deployment.logs / "daemon.log").read_text()[-3000:],
                )
                time.sleep(0.5)
            return time.monotonic() - start

        wait(
            "the first run started, its worker recorded",
            lambda: (
                (run := instance.get_run_by_id(first)) is not None
                and run.status == dg.DagsterRunStatus.STARTED
                and WORKER_TAG in run.tags
            ),
            120,
        )
        assert status(second) == dg.DagsterRunStatus.QUEUED  # one run of group a at a time
        # compose runs the daemon and the user code in containers of their own: the run's
        # process cannot be seen from the daemon, only its code server can say
        instance.add_run_tags(first, {WORKER_TAG: "another machine"})
        os.killpg(user_code.pid, signal.SIGKILL)  # the server and the run it started
        user_code.wait(timeout=10)
        killed = time.monotonic()
        again = stack.enter_context(
            deployment.process(local_command("user_code", port=port), "user_code_again")
        )
        wait_for_grpc(port, again, deployment.logs / "user_code_again.log")
        wait("the killed run FAILURE", lambda: status(first) == dg.DagsterRunStatus.FAILURE, 60)
        failed_after = time.monotonic() - killed
        message = "\n".join(
            entry.message
            for entry in instance.all_logs(first)
            if entry.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
        )
        assert "no longer runs it" in message, message
        wait(
            "the second run of group a to leave the queue",
            lambda: status(second) != dg.DagsterRunStatus.QUEUED,
            30,
        )
    assert failed_after < 60


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args!r} exited"
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url, timeout=2).ok:
                return
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s")


def graphql(web_port: int, query: str, variables: dict[str, Any] | None = None) -> Any:
    reply = requests.post(
        f"http://127.0.0.1:{web_port}/graphql",
        json={"query": query, "variables": variables or {}},
        timeout=30,
    )
    reply.raise_for_status()
    body = reply.json()
    assert "errors" not in body, body
    return body["data"]


def workspace_location(web_port: int) -> dict[str, Any]:
    """The one code location the webserver shows, as its GraphQL API reports it."""
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        name
        locationOrLoadError {
            __typename
            ... on RepositoryLocation { repositories { jobs { name } } }
            ... on PythonError { message }
        } } } } }"""
    [entry] = graphql(web_port, query)["workspaceOrError"]["locationEntries"]
    return dict(entry)


def launch_run(web_port: int, tags: dict[str, str]) -> str:
    """Submit the daily job as the UI's Materialize button does: to the instance's run queue."""
    mutation = """mutation Launch($params: ExecutionParams!) {
        launchRun(executionParams: $params) {
            __typename
            ... on LaunchRunSuccess { run { runId } }
            ... on Error { message }
        } }"""
    params = {
        "selector": {
            "repositoryLocationName": "kis_balance_history",
            "repositoryName": "__repository__",
            "jobName": "daily_balance",
        },
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = graphql(web_port, mutation, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def test_compose_services_run_the_documented_commands() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "minio", "minio_init", "user_code", "webserver", "daemon"}
    documented = documentation()  # README.md and docs/

    postgres = services["postgres"]
    assert int(postgres["image"].split(":")[1]) >= 16
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    commands = {
        "user_code": "dagster api grpc -m pipelines.definitions -h 0.0.0.0 -p 4000",
        "webserver": "dagster-webserver -h 0.0.0.0 -p 3000 -w deploy/workspace.yaml",
        "daemon": "dagster-daemon run -w deploy/workspace.yaml",
    }
    needed = env_references(load_yaml(DEPLOY / "dagster.yaml")) | env_references(
        load_yaml(DEPLOY / "workspace.yaml")
    )
    assert needed == {
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_PORT",
        "DAGSTER_CODE_SERVER_HOST",
        "DAGSTER_CODE_SERVER_PORT",
    }
    for name in DAGSTER_SERVICES:
        service = services[name]
        assert shlex.join(service["command"]) == commands[name]
        assert commands[name] in documented, name
        assert needed <= set(service["environment"]), name
        assert service["environment"]["DAGSTER_CODE_SERVER_HOST"] == "user_code"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["user_code"]["condition"] == "service_healthy"
    user_code = services["user_code"]["environment"]
    assert {"KIS_DATA_ROOT", "XDG_CACHE_HOME", "AWS_ENDPOINT_URL"} <= set(user_code)
    assert services["minio_init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb" in " ".join(services["minio_init"]["command"])
    # no secret in the file: passwords come from deploy/.env, KIS credentials from kis.env
    text = (DEPLOY / "docker-compose.yaml").read_text()
    assert not re.search(r"(PASSWORD|SECRET[A-Z_]*): (?!\$\{)", text)


def test_image_runs_the_code_server_from_the_lock_file() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [cmd] = re.findall(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    assert json.loads(cmd) == compose()["services"]["user_code"]["command"]
    assert "uv sync --locked --no-dev" in dockerfile
    makefile_uv = re.search(r"^UV_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.M)
    assert makefile_uv and f'"uv=={makefile_uv.group(1)}"' in dockerfile
    assert "COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml" in dockerfile
    # the build context is an allow-list of what the Dockerfile copies (no .env, data, .venv)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line for line in ignore if line and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    copied = set()
    for sources in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        copied |= set(sources.split())
    assert copied == allowed


def test_helm_values_use_current_chart_keys_and_the_same_run_queue() -> None:
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    assert "dagit" not in json.dumps(values)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert "postgresqlPassword" not in values["postgresql"]
    instance = load_yaml(DEPLOY / "dagster.yaml")
    scheme = instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlScheme"] == scheme

    [user_code] = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert user_code["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"]
    assert user_code["includeConfigInLaunchedRuns"]["enabled"] is True
    assert user_code["image"]["repository"] and user_code["image"]["tag"]
    mounts = {mount["mountPath"] for mount in user_code["volumeMounts"]}
    env = {var["name"]: var["value"] for var in user_code["env"]}
    for path in (env["KIS_DATA_ROOT"], env["XDG_CACHE_HOME"]):
        assert any(path.startswith(mount) for mount in mounts), path

    queue = values["dagsterDaemon"]["runCoordinator"]
    assert queue["enabled"] is True and queue["type"] == "QueuedRunCoordinator"
    limits = queue["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    assert limits["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert limits["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    # a run whose pod died is failed as soon as in deploy/dagster.yaml (K8sRunLauncher checks
    # its Job), not resumed
    monitoring, watched = values["dagsterDaemon"]["runMonitoring"], instance["run_monitoring"]
    assert monitoring["pollIntervalSeconds"] == watched["poll_interval_seconds"] <= 30
    assert monitoring["maxResumeRunAttempts"] == watched["max_resume_run_attempts"] == 0
    assert values["telemetry"]["enabled"] is False
    assert values["pythonLogs"]["managedPythonLoggers"] == ["pipelines"]
