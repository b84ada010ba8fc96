"""Chaos, with real processes: the pipeline run from a shell as a user runs it (`dagster asset
materialize`, its own DAGSTER_HOME, data root and caches) against the KIS simulator in a
process of its own; runs and a `make repair` SIGKILLed at random points, a file of each kind cut
short, the server swapped for one that redirects or one that trickles, the object store frozen.
Each is followed by a normal run and one check (`assert_whole`): every view and table macro
answers, with exactly the values the simulator served for each account and day, once;
`make verify` finds nothing; no file holds an app key, app secret or token.

The random points come from one seed, CHAOS_SEED (default 16), named in every failure; each
scenario draws from its own generator, so a scenario run alone draws the same points:

    CHAOS_SEED=7 .venv/bin/pytest tests/test_chaos.py
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis import protocol
from pipelines.kis.protocol import Account
from pipelines.lake import schema
from pipelines.lake.compaction import CompactedMonths
from pipelines.lake.tables import ParquetTables
from pipelines.settings import Settings
from pipelines.simulator.portfolio import balance_body
from pipelines.storage.roots import ObjectStorage, open_root
from pipelines.warehouse import warehouse
from tests import objectstore
from tests.conftest import PARTITION_ENV
from tests.runs import (
    DEVELOPER_SETTINGS,
    Ran,
    kill_group,
    materialize_command,
    not_owner_only,
    run_command,
)
from tests.served import (
    ACCOUNTS,
    assert_no_secret_anywhere,
    assert_once,
    assert_reporting_served,
    assert_served,
    closed_month_days,
    cut,
    every_file,
    every_view_and_macro,
    local_files,
)
from tests.wire_servers import (
    TOKEN,
    Connection,
    Recorder,
    Request,
    ScriptedServer,
    account_of,
    balance_answer,
    head,
    json_bytes,
    kis_like,
    token_answer,
)

#: The seed of every random point; another one: CHAOS_SEED=7 .venv/bin/pytest tests/test_chaos.py
SEED = int(os.environ.get("CHAOS_SEED") or 16)
#: Runs killed at random points, one in each equal part of a normal run's span.
KILLS = 3
#: Each account has an app key of its own (12345678-21 through the accounts file).
APP_KEYS = {
    ACCOUNTS[0]: ("PSchaosAppKeyOfAccount01xxxxxxxxxxx", "chaos-app-secret-01-" + "Qz7" * 10),
    ACCOUNTS[1]: ("PSchaosAppKeyOfAccount21xxxxxxxxxxx", "chaos-app-secret-21-" + "Wv3" * 10),
}
ACCOUNTS_FILE = """
[[account]]
id = "12345678-01"

[[account]]
id = "12345678-21"
app_key_env = "CHAOS_APP_KEY_21"
app_secret_env = "CHAOS_APP_SECRET_21"
"""
#: A trickling server's account fails within its budget: requests of 1 s, 2 s per account.
DEADLINE, BUDGET = 1.0, 2.0


@contextmanager
def scenario(what: str) -> Iterator[random.Random]:
    """The scenario's own random numbers (from CHAOS_SEED and its name); any assertion that
    fails in it names the scenario and the seed."""
    try:
        yield random.Random(f"{SEED}:{what}")
    except AssertionError as error:
        raise AssertionError(f"[{what}; CHAOS_SEED={SEED}] {error}") from error


@contextmanager
def step(what: str) -> Iterator[None]:
    """A step of a scenario, named in the message of any assertion that fails in it."""
    try:
        yield
    except AssertionError as error:
        raise AssertionError(f"{what}: {error}") from error


# -- the processes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    """`kis-simulator --port 0` in a process of its own; yields its URL. Tokens are issued
    every second (KIS: once a minute): a run killed between a token's issuance and its caching
    would otherwise make the next run wait KIS's minute out, as it does with the real service."""
    command = [str(Path(sys.executable).parent / "kis-simulator"), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--token-interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("KIS simulator listening on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def environment(tmp: Path, simulator_url: str, data_root: str) -> dict[str, str]:
    """A user's shell for the pipeline: simulator mode against the simulator's process, both
    accounts with app keys of their own, everything else of theirs under `tmp`."""
    home = tmp / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp / "accounts.toml").write_text(ACCOUNTS_FILE)
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KIS_", "DAGSTER_", "AWS_", "XDG_"))
    }
    (key_01, secret_01), (key_21, secret_21) = APP_KEYS.values()
    return {
        **inherited,
        **dict.fromkeys(DEVELOPER_SETTINGS, ""),
        **PARTITION_ENV,
        "KIS_ENV": "sim",
        "KIS_BASE_URL": simulator_url,
        "KIS_ACCOUNTS_FILE": str(tmp / "accounts.toml"),
        "KIS_APP_KEY": key_01,
        "KIS_APP_SECRET": secret_01,
        "CHAOS_APP_KEY_21": key_21,
        "CHAOS_APP_SECRET_21": secret_21,
        "KIS_DATA_ROOT": data_root,
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_DATA_HOME": str(tmp / "share"),
    }


def settings_of(env: dict[str, str]) -> Settings:
    """The settings the runs of `env` read (never the repository's .env)."""
    return Settings.from_env(env, env_file=Path(env["DAGSTER_HOME"]) / "no.env")


def normal_run(env: dict[str, str], day: date | str) -> Ran:
    ran = run_command(materialize_command(str(day)), env)
    assert ran.returncode == 0, f"the normal run of {day} failed: {ran.output[-4000:]}"
    return ran


def command(
    module: str,
    env: dict[str, str],
    at: tuple[float, Callable[[subprocess.Popen[str]], None]] | None = None,
) -> Ran:
    """`python -m pipelines.commands.<module>` (make verify, make repair)."""
    return run_command([sys.executable, "-m", f"pipelines.commands.{module}"], env, at=at)


# -- the check -------------------------------------------------------------------------------
def secrets_of(env: dict[str, str]) -> dict[str, str]:
    """The app keys and secrets, and every token issued so far (from the token cache)."""
    secrets = {}
    for account, (key, secret) in APP_KEYS.items():
        secrets |= {f"app key of {account.id}": key, f"app secret of {account.id}": secret}
    tokens = Path(env["XDG_CACHE_HOME"], "kis-balance-history", "tokens")
    for number, path in enumerate(sorted(tokens.glob("*.json"))):
        secrets[f"token {number} ({path.name})"] = json.loads(path.read_text())["access_token"]
    return {**secrets, "token of the wire servers": TOKEN}


def assert_whole(env: dict[str, str], days: list[date], *, verify: int = 0) -> Ran:
    """Every view and table macro answers; every amount is what the simulator served for its
    account and day, once; net assets as served, and summed; `make verify` exits `verify`; no
    file of the data root, the warehouse or DAGSTER_HOME holds a secret; a local root's files
    are its owner's only. Returns the verify run."""
    settings = settings_of(env)
    with warehouse.connect(settings.data_root, settings.warehouse) as con:
        every_view_and_macro(con, max(days))
        for day in days:
            for account in ACCOUNTS:
                assert_served(con, account, day)
        assert_reporting_served(con, days)
        assert_once(con)
        held = con.sql("SELECT DISTINCT snapshot_date FROM account_summary ORDER BY 1").fetchall()
        assert [d for (d,) in held] == sorted(days)
    verified = command("verify", env)
    assert verified.returncode == verify, verified.output[-4000:]
    storage = open_root(settings.data_root)
    if isinstance(storage, ObjectStorage):
        files = every_file(storage) | local_files(storage.local_dir, settings.warehouse)
        private = not_owner_only(storage.local_dir)
    else:
        files = local_files(Path(str(storage.root)))
        private = not_owner_only(Path(str(storage.root)))
    files |= local_files(Path(env["DAGSTER_HOME"]))
    assert_no_secret_anywhere(files, secrets_of(env))
    assert private == []
    return verified


# -- a local data root with a closed month, and a measured run of today -----------------------
@dataclass(frozen=True)
class World:
    env: dict[str, str]
    data_root: Path
    today: date
    #: The days with a snapshot: the closed month's last two (compacted), and today.
    days: list[date]
    #: A normal run of today, measured.
    baseline: Ran


@pytest.fixture(scope="module")
def world(simulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("chaos")
    env = environment(tmp, simulator_url, str(tmp / "data"))
    today = today_in_seoul()
    closed = closed_month_days(today)
    normal_run(env, f"{closed[0]}...{closed[1]}")
    baseline = normal_run(env, today)
    assert baseline.run_started is not None and baseline.run_ended is not None
    world = World(env, tmp / "data", today, [*closed, today], baseline)
    with scenario("setting up"):
        assert_whole(env, world.days)
    return world


def test_runs_killed_at_random_points_leave_every_view_whole(world: World) -> None:
    with scenario("runs killed") as rng:
        start, end = world.baseline.run_started or 0.0, world.baseline.run_ended or 0.0
        part = (end - start) / KILLS
        moments = [start + part * (n + rng.random()) for n in range(KILLS)]
        killed = []
        for moment in moments:
            with step(f"a run killed {moment:.2f} s after its start"):
                ran = run_command(materialize_command(str(world.today)), world.env,
                                  at=(moment, kill_group))  # fmt: skip
                assert ran.killed or ran.returncode == 0, ran.output[-4000:]
                killed += [moment] if ran.killed else []
                print(f"run killed at {moment:.2f} s: {'killed' if ran.killed else 'had ended'}")
                normal_run(world.env, world.today)
                assert_whole(world.env, world.days)
        # a run ends a little earlier or later than the measured one: most are killed
        assert killed, f"every run ended before its kill ({moments}, run span {start}-{end})"


def test_cut_short_daily_files_are_rebuilt_by_the_next_run(world: World) -> None:
    with scenario("daily files cut short"):
        tables = ParquetTables(world.data_root)
        damaged = [
            tables.path("asset_categories", world.days[0]),
            tables.path("account_summary", world.days[1]),
        ]
        for path in damaged:
            cut(path)
        ran = normal_run(world.env, world.today)
        for path in damaged:
            assert f"{path} was damaged" in ran.output
        assert_whole(world.env, world.days)


def test_cut_short_compacted_months_are_compacted_again_by_the_next_run(world: World) -> None:
    with scenario("compacted months cut short"):
        months = CompactedMonths(world.data_root)
        month = world.days[0].replace(day=1)
        damaged = [months.path(table, month) for table in schema.TABLES]
        for path in damaged:
            cut(path)
        ran = normal_run(world.env, world.today)
        for path in damaged:
            assert f"{path} was damaged" in ran.output
            assert path in CompactedMonths(world.data_root).files(path.parent.name).compacted
        assert_whole(world.env, world.days)


def test_a_cut_short_warehouse_is_built_again_by_the_next_run(world: World) -> None:
    with scenario("warehouse cut short"):
        cut(world.data_root / warehouse.FILE_NAME)
        normal_run(world.env, world.today)
        assert_whole(world.env, world.days)


def test_a_cut_short_raw_answer_keeps_its_rows_and_a_killed_repair_harms_nothing(
    world: World,
) -> None:
    with scenario("a raw answer cut short, and make repair killed") as rng:
        day, account = world.days[1], ACCOUNTS[1]
        [answer] = RawLanding(world.data_root).answers_by_account(day)[account.id]
        cut(answer)
        with step(f"the normal run of {day}, rebuilt from its raw answers"):
            ran = run_command(materialize_command(str(day)), world.env)
            assert ran.returncode != 0
            named = [line for line in ran.output.splitlines() if str(answer) in line]
            assert [
                line for line in named if f"{account.id}: " in line and "keeps the rows" in line
            ], named
            verified = assert_whole(world.env, world.days, verify=2)  # the rows are kept
            assert "RAW ANSWER damaged" in verified.output and str(answer) in verified.output

        daily = ParquetTables(world.data_root).path("asset_categories", world.days[0])
        with step("make repair, measured"):
            cut(daily)
            repaired = command("repair", world.env)
            assert repaired.returncode == 0, repaired.output[-4000:]
            assert f"repaired: {daily} was damaged" in repaired.output

        moment = rng.uniform(0, repaired.took)
        with step(f"make repair killed {moment:.2f} s after its start, then run again"):
            cut(daily)
            killed = command("repair", world.env, at=(moment, kill_group))
            print(f"make repair ({repaired.took:.2f} s) killed at {moment:.2f} s: {killed.killed}")
            assert killed.killed or killed.returncode == 0, killed.output[-4000:]
            again = command("repair", world.env)
            assert again.returncode == 0, again.output[-4000:]
            verified = assert_whole(world.env, world.days)
            assert "1 damaged raw answers are known" in verified.output


def test_a_redirecting_server_gets_nothing_sent_elsewhere(world: World) -> None:
    """The token request of 12345678-01's key is redirected (307), and the balance request of
    12345678-21 (302): neither is followed, and the other port receives nothing."""
    with scenario("a redirecting server"), Recorder() as elsewhere:
        first_key = APP_KEYS[ACCOUNTS[0]][0]

        def redirecting(request: Request, connection: Connection) -> bool:
            to = {"location": f"{elsewhere.base_url}{request.path}", "content-type": "text/html"}
            if request.path == protocol.TOKEN_PATH:
                if json.loads(request.body)["appkey"] != first_key:
                    return token_answer(connection)
                return connection.answer(307, b"<p>moved</p>", to)
            return connection.answer(302, b"<p>moved</p>", to)

        with ScriptedServer(redirecting) as server:
            ran = run_command(
                materialize_command(str(world.today)),
                {**world.env, "KIS_BASE_URL": server.base_url},
            )
        assert ran.returncode != 0
        for account, status in zip(ACCOUNTS, (307, 302), strict=True):
            lines = [line for line in ran.output.splitlines() if f"account {account.id}" in line]
            refused = f"HTTP {status} redirect to 127.0.0.1:{elsewhere.port} refused"
            assert [line for line in lines if refused in line], (account.id, status, lines)
        paths = [r.path for r in server.requests]  # one token request per key, none retried
        assert sorted(paths) == sorted([protocol.TOKEN_PATH] * 2 + [protocol.BALANCE_PATH])
        time.sleep(0.1)  # anything on its way to the other port has arrived by now
        assert elsewhere.connections == 0 and not elsewhere.received

        normal_run(world.env, world.today)
        assert_whole(world.env, world.days)


def test_a_trickling_server_holds_a_run_no_longer_than_the_accounts_budget(world: World) -> None:
    """12345678-01's answer comes a byte every 0.2 s (its body would take 20 minutes), the
    other account's at once: the run ends within about the budget, naming the account."""
    stalled, other = ACCOUNTS

    def trickling(request: Request, connection: Connection) -> bool:
        account = Account.parse(account_of(request))
        body = json_bytes(balance_body(account, world.today))
        if account != stalled:
            return balance_answer(connection, body)
        headers = {"content-type": "application/json", "tr_id": "CTRP6548R", "tr_cont": "D"}
        connection.send(head(200, body, headers))
        connection.trickle(body, 0.2)
        return False

    with scenario("a trickling server"):
        with ScriptedServer(kis_like(trickling)) as server:
            waits = {"KIS_REQUEST_DEADLINE": f"{DEADLINE:g}", "KIS_ACCOUNT_BUDGET": f"{BUDGET:g}"}
            env = {**world.env, "KIS_BASE_URL": server.base_url, **waits}
            ran = run_command(materialize_command(str(world.today)), env)
        assert ran.returncode != 0
        named = [line for line in ran.output.splitlines() if f"account {stalled.id}: " in line]
        assert [line for line in named if "KIS_ACCOUNT_BUDGET" in line], named
        landed = [line for line in ran.output.splitlines() if "landed 1 file(s) under" in line]
        assert [line for line in landed if line.endswith(other.id)], landed  # not held up
        bound = world.baseline.took * 1.5 + BUDGET + 1
        print(f"trickled run: {ran.took:.2f} s (a normal one: {world.baseline.took:.2f} s)")
        assert ran.took < bound, (ran.took, bound)

        normal_run(world.env, world.today)
        assert_whole(world.env, world.days)


def test_a_frozen_object_store_fails_the_run_naming_bucket_and_key(
    simulator_url: str, tmp_path: Path
) -> None:
    """An s3:// root in moto's server, a process of its own, stopped (SIGSTOP) at a random
    point of a run with small limits (KIS_S3_*), resumed once the run has ended."""
    with scenario("a frozen object store") as rng, objectstore.moto_process() as (endpoint, moto):
        bucket = objectstore.new_bucket(endpoint)
        env = {
            **environment(tmp_path, simulator_url, f"s3://{bucket}/history"),
            **objectstore.FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "KIS_WAREHOUSE": str(tmp_path / "local" / "warehouse.duckdb"),
        }
        today = today_in_seoul()
        baseline = normal_run(env, today)
        start, end = baseline.run_started or 0.0, baseline.run_ended or 0.0
        moment = rng.uniform(0, start + (end - start) / 2)  # before the run's last call
        with step(f"the store frozen {moment:.2f} s after the run's start"):
            try:
                ran = run_command(
                    materialize_command(str(today)),
                    {**env, **objectstore.FROZEN_LIMITS},
                    at=(moment, lambda _: moto.send_signal(signal.SIGSTOP)),
                )
            finally:
                moto.send_signal(signal.SIGCONT)
            assert ran.acted_at is not None, "the run ended before the store was frozen"
            assert ran.returncode != 0
            failed = [
                line
                for line in ran.output.splitlines()
                if f"s3://{bucket}/history/" in line and "did not answer within its limits" in line
            ]
            assert failed, ran.output[-4000:]
            print(f"the frozen store's failure: {failed[0][-600:]}")
            frozen_for = ran.took - ran.acted_at
            print(f"store frozen at {moment:.2f} s; the run ended {frozen_for:.2f} s later")
            assert frozen_for < 4 * objectstore.FROZEN_CALL_BOUND, frozen_for

        normal_run(env, today)
        assert_whole(env, [today])
