"""The storage seam: the same tests over a local directory and an S3 root on a loopback server.

Also KIS_DATA_ROOT as an s3:// URL and KIS_WAREHOUSE (refusals: tests/test_settings.py).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import LandingError, StoreUnreachableError
from pipelines.ingest.fetch import fetch_and_land, land_pending, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis.tokens import TokenCache
from pipelines.lake import parquet
from pipelines.settings import Settings
from pipelines.simulator.server import Simulator
from pipelines.storage.roots import (
    LocalStorage,
    ObjectPath,
    ObjectStorage,
    Storage,
    open_input,
    open_root,
    parse_root,
)
from pipelines.tidy.build import build_days
from pipelines.warehouse import view_check, warehouse
from tests import objectstore
from tests.runs import kill_while_writing

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A fresh data root, local or in a fresh bucket on the loopback S3 server."""
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    root = request.getfixturevalue("s3_root")
    return open_root(parse_root(root, os.environ))


def root_text(storage: Storage) -> str:
    return str(storage.root)


# -- reading and writing --------------------------------------------------------------------


def test_write_then_read_where_the_location_says(storage: Storage) -> None:
    key = "raw/day=1/12345678-01/a.json"
    where = storage.write_bytes(key, '{"잔고": 1}'.encode())
    assert where == storage.location(key)
    assert str(where) == f"{root_text(storage)}/{key}"
    assert (where.name, where.stem, where.suffix) == ("a.json", "a", ".json")
    assert where.parent.name == "12345678-01"
    assert where.read_bytes() == storage.read_bytes(key) == '{"잔고": 1}'.encode()
    assert where.exists() and storage.exists(key)
    assert not storage.exists("raw/day=1/12345678-01/b.json")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("raw/missing.json")


def test_a_rewrite_replaces_the_whole_file_and_its_fingerprint(storage: Storage) -> None:
    storage.write_bytes("t/data.parquet", b"first version")
    before = storage.files("t")
    storage.write_bytes("t/data.parquet", b"second, longer version")
    after = storage.files("t")
    assert list(before) == list(after) == ["t/data.parquet"]
    assert before["t/data.parquet"] != after["t/data.parquet"]
    assert storage.read_bytes("t/data.parquet") == b"second, longer version"
    storage.write_bytes("t/data.parquet", b"second, longer Version")  # same size
    assert storage.files("t")["t/data.parquet"] != after["t/data.parquet"]


def test_an_existing_name_is_never_replaced_without_overwrite(storage: Storage) -> None:
    storage.write_bytes("raw/a.json", b"landed first", overwrite=False)
    with pytest.raises(FileExistsError):
        storage.write_bytes("raw/a.json", b"landed second", overwrite=False)
    with pytest.raises(FileExistsError), storage.staged("raw/a.json", overwrite=False) as tmp:
        tmp.write_bytes(b"landed third")
    assert storage.read_bytes("raw/a.json") == b"landed first"
    assert list(storage.files("raw")) == ["raw/a.json"]


def test_of_writers_racing_for_one_name_exactly_one_lands(storage: Storage) -> None:
    """The conditional write (If-None-Match: * on S3, link(2) locally) decides, not a check
    before the write."""
    outcomes: dict[int, str] = {}

    def land(writer: int) -> None:
        try:
            storage.write_bytes("raw/race.json", b"writer %d" % writer * 500, overwrite=False)
            outcomes[writer] = "landed"
        except FileExistsError:
            outcomes[writer] = "refused"

    threads = [threading.Thread(target=land, args=(writer,)) for writer in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [winner] = [writer for writer, outcome in outcomes.items() if outcome == "landed"]
    assert sorted(outcomes.values()) == ["landed"] + ["refused"] * 5
    assert storage.read_bytes("raw/race.json") == b"writer %d" % winner * 500


def test_a_failed_staged_write_leaves_the_previous_file(storage: Storage) -> None:
    storage.write_bytes("parquet/t/data.parquet", b"previous")
    with pytest.raises(RuntimeError, match="boom"), storage.staged("parquet/t/data.parquet") as tmp:
        tmp.write_bytes(b"half of a new file")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), storage.staged("parquet/t/new.parquet") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert storage.read_bytes("parquet/t/data.parquet") == b"previous"
    assert list(storage.files("parquet")) == ["parquet/t/data.parquet"]


def test_many_staged_files_land_together_or_not_at_all(storage: Storage) -> None:
    keys = [f"parquet/t/snapshot_date=2026-01-0{n}/data.parquet" for n in range(1, 4)]
    storage.write_bytes(keys[0], b"previous")
    with pytest.raises(RuntimeError), storage.staged_many(keys) as temps:
        for n, tmp in enumerate(temps):
            tmp.write_bytes(b"new %d" % n)
        raise RuntimeError("boom")
    assert list(storage.files("parquet")) == [keys[0]]
    assert storage.read_bytes(keys[0]) == b"previous"
    with storage.staged_many(keys) as temps:
        for n, tmp in enumerate(temps):
            tmp.write_bytes(b"new %d" % n)
    assert [storage.read_bytes(key) for key in keys] == [b"new 0", b"new 1", b"new 2"]
    assert sorted(storage.files("parquet")) == keys  # no temporary file left behind


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pipelines.storage.roots import open_root, parse_root
    storage = open_root(parse_root(sys.argv[1], os.environ))
    with storage.staged("parquet/t/data.parquet") as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"PAR1 half a file")
            handle.flush()
        print("writing", flush=True)
        time.sleep(60)
    """
)


def test_a_writer_killed_mid_write_leaves_the_previous_file(storage: Storage) -> None:
    storage.write_bytes("parquet/t/data.parquet", b"previous, whole")
    kill_while_writing(KILLED_WRITER, root_text(storage))
    assert storage.read_bytes("parquet/t/data.parquet") == b"previous, whole"
    assert list(storage.files("parquet")) == ["parquet/t/data.parquet"]


def test_files_lists_every_depth_and_skips_hidden_names(storage: Storage) -> None:
    for key in ("a/b/c/one.json", "a/two.json", "a/.hidden.tmp", "ab/three.json", "z.json"):
        storage.write_bytes(key, b"x")
    assert sorted(storage.files("a")) == ["a/b/c/one.json", "a/two.json"]
    assert sorted(storage.files("a/")) == ["a/b/c/one.json", "a/two.json"]
    assert storage.files("missing") == {}
    assert sorted(storage.files("a", named="one.json")) == []  # two folders down
    assert sorted(storage.files("a/b", named="one.json")) == ["a/b/c/one.json"]
    for key in ("t/d=1/data.parquet", "t/d=2/data.parquet", "t/d=2/x.parquet", "t/data.parquet"):
        storage.write_bytes(key, b"x")
    listed = storage.files("t", named="data.parquet")
    assert sorted(listed) == ["t/d=1/data.parquet", "t/d=2/data.parquet"]
    assert listed == {key: storage.files("t")[key] for key in listed}
    storage.remove("a/two.json")
    storage.remove("a/two.json")  # already gone: fine
    assert sorted(storage.files("a")) == ["a/b/c/one.json"]


def test_parquet_reads_through_open_input_and_duckdb(storage: Storage) -> None:
    table = pa.table({"amount": pa.array([1, 2, 3], pa.decimal128(38, 8)), "n": [1, 2, 3]})
    for day in ("2024-05-02", "2024-05-03"):
        with storage.staged(f"parquet/t/snapshot_date={day}/data.parquet") as tmp:
            pq.write_table(table, tmp)
    where = storage.location("parquet/t/snapshot_date=2024-05-02/data.parquet")
    with open_input(where) as source:
        assert pq.read_schema(source).equals(table.schema)
    glob = storage.duckdb_path("parquet/t/snapshot_date=2024-05-[0-3][0-9]/data.parquet")
    with duckdb.connect() as con:
        storage.attach(con)
        rows = con.sql(
            f"SELECT snapshot_date, sum(amount) FROM read_parquet('{glob}', "
            "hive_partitioning = true, hive_types = {'snapshot_date': DATE}) GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [(str(day), str(total)) for day, total in rows] == [
        ("2024-05-02", "6.00000000"),  # exact DECIMAL(38,8), not a float
        ("2024-05-03", "6.00000000"),
    ]


def test_a_lock_holds_off_a_second_holder(storage: Storage) -> None:
    order: list[str] = []
    with storage.lock("tidy-2024-05-02"):
        second = threading.Thread(target=lambda: _take(storage, order))
        second.start()
        time.sleep(0.3)
        order.append("first done")
    second.join(timeout=10)
    assert order == ["first done", "second"]


def _take(storage: Storage, order: list[str]) -> None:
    with storage.lock("tidy-2024-05-02"):
        order.append("second")


# -- object storage only --------------------------------------------------------------------


def test_a_put_cut_off_mid_body_leaves_the_previous_object(s3_root: str, s3_endpoint: str) -> None:
    """What a killed writer leaves on the wire: half a body, then a closed connection."""
    storage = open_root(parse_root(s3_root, os.environ))
    storage.write_bytes("parquet/t/data.parquet", b"previous, whole")
    bucket = urlsplit(s3_root).netloc
    endpoint = urlsplit(s3_endpoint)
    assert endpoint.hostname == "127.0.0.1"
    connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=10)
    connection.putrequest("PUT", f"/{bucket}/history/parquet/t/data.parquet")
    connection.putheader("Content-Length", str(1_000_000))
    connection.endheaders()
    connection.send(b"PAR1" + b"x" * 400_000)
    connection.close()
    time.sleep(0.5)
    assert storage.read_bytes("parquet/t/data.parquet") == b"previous, whole"


def test_a_report_is_stored_as_a_web_page(s3_root: str, s3_endpoint: str) -> None:
    storage = open_root(parse_root(s3_root, os.environ))
    storage.write_bytes("reports/portfolio-2024-05-02.html", b"<!doctype html>")
    bucket = urlsplit(s3_root).netloc
    head = objectstore.client(s3_endpoint).head_object(
        Bucket=bucket, Key="history/reports/portfolio-2024-05-02.html"
    )
    assert head["ContentType"] == "text/html"


# -- KIS_DATA_ROOT and KIS_WAREHOUSE --------------------------------------------------------


def test_an_s3_data_root_takes_the_standard_aws_variables(tmp_path: Path) -> None:
    environ = {
        "KIS_DATA_ROOT": "s3://my-bucket/kis/history/",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "do-not-print-this-secret",
        "AWS_REGION": "ap-northeast-2",
        "XDG_DATA_HOME": str(tmp_path / "share"),
    }
    settings = Settings.from_env(environ)
    assert isinstance(settings.data_root, ObjectPath)
    assert str(settings.data_root) == "s3://my-bucket/kis/history"
    assert str(settings.data_root / "raw") == "s3://my-bucket/kis/history/raw"
    storage = open_root(settings.data_root)
    assert isinstance(storage, ObjectStorage)
    assert (storage.bucket, storage.prefix) == ("my-bucket", "kis/history")
    assert storage.access.endpoint_url == "http://127.0.0.1:9000"
    assert storage.access.region == "ap-northeast-2"
    assert storage.access.access_key_id == "AKIDEXAMPLE"
    # the warehouse is local, one per root, and the secret shows nowhere
    assert settings.warehouse == (
        tmp_path / "share/kis-balance-history/s3/my-bucket/kis/history/warehouse.duckdb"
    )
    for shown in (repr(settings), repr(storage), str(settings.data_root), repr(settings.data_root)):
        assert "do-not-print-this-secret" not in shown


def test_kis_warehouse_overrides_the_default(tmp_path: Path) -> None:
    local = Settings.from_env({"KIS_DATA_ROOT": str(tmp_path / "data")})
    assert local.warehouse == tmp_path / "data" / "warehouse.duckdb"
    chosen = Settings.from_env(
        {"KIS_DATA_ROOT": "s3://bucket", "KIS_WAREHOUSE": str(tmp_path / "w" / "kis.duckdb")}
    )
    assert chosen.warehouse == tmp_path / "w" / "kis.duckdb"
    assert str(chosen.data_root) == "s3://bucket"


def test_local_roots_stay_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for text in ("data", "./s3-archive", "./C:/kis", "s3-archive", str(tmp_path / "x")):
        root = Settings.from_env({"KIS_DATA_ROOT": text}).data_root
        assert isinstance(root, Path) and root.is_absolute()
        assert isinstance(open_root(root), LocalStorage)


# -- a store that does not answer -----------------------------------------------------------
@pytest.fixture
def frozen_store(tmp_path: Path) -> Iterator[tuple[ObjectStorage, Any]]:
    """A root in moto running as a process of its own (which a test can freeze), with small
    limits; yields the storage and the process."""
    with objectstore.moto_process() as (endpoint, process):
        environ = {
            **objectstore.FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "XDG_DATA_HOME": str(tmp_path / "share"),
            **objectstore.FROZEN_LIMITS,
        }
        bucket = objectstore.new_bucket(endpoint)
        storage = open_root(parse_root(f"s3://{bucket}/history", environ))
        assert isinstance(storage, ObjectStorage)
        yield storage, process


def frozen_store_environ(storage: ObjectStorage, simulator: Simulator, tmp_path: Path) -> dict:
    """The settings of a run on the frozen store's root, against the simulator."""
    return {
        **objectstore.FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": str(storage.access.endpoint_url),
        "XDG_DATA_HOME": str(tmp_path / "share"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "KIS_ENV": "sim",
        "KIS_BASE_URL": simulator.base_url,
        "KIS_ACCOUNTS": "12345678-01,12345678-21",
        "KIS_DATA_ROOT": storage.url,
        "KIS_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        **objectstore.FROZEN_LIMITS,
    }


def test_a_frozen_store_fails_each_call_naming_bucket_and_key_within_its_limits(
    frozen_store: tuple[ObjectStorage, Any],
) -> None:
    storage, process = frozen_store
    storage.write_bytes("raw/day/a.json", b"{}")
    calls: list[tuple[str, Callable[[], object], str]] = [
        ("writing", lambda: storage.write_bytes("raw/day/b.json", b"{}", overwrite=False), "b"),
        ("reading", lambda: storage.read_bytes("raw/day/a.json"), "a"),
        ("looking up", lambda: storage.exists("raw/day/a.json"), "a"),
        ("listing", lambda: storage.files("raw/day"), ""),
    ]
    with objectstore.frozen(process):
        for doing, call, name in calls:
            started = time.monotonic()
            with pytest.raises(StoreUnreachableError) as caught:
                call()
            took = time.monotonic() - started
            message = str(caught.value)
            key = f"raw/day/{name}.json" if name else "raw/day"
            assert message.startswith(f"s3://{storage.bucket}/history/{key}: {doing} failed")
            assert "connect 0.3 s, read 0.3 s, 2 attempt(s)" in message
            assert 0.3 < took < objectstore.FROZEN_CALL_BOUND, (doing, took)
            assert not isinstance(caught.value, OSError)  # never taken for a missing file
    assert storage.read_bytes("raw/day/a.json") == b"{}"  # the store answers again
    # A write that timed out may still be stored once the store wakes (its request was on the
    # wire): the same key with the same bytes, which a later conditional write finds there.
    if storage.exists("raw/day/b.json"):
        assert storage.read_bytes("raw/day/b.json") == b"{}"


def test_a_run_against_a_frozen_store_fails_naming_the_key_and_keeps_the_answer(
    frozen_store: tuple[ObjectStorage, Any], simulator: Simulator, tmp_path: Path
) -> None:
    storage, process = frozen_store
    settings = Settings.from_env(
        frozen_store_environ(storage, simulator, tmp_path), env_file=tmp_path / "none.env"
    )
    landing = RawLanding(settings.data_root)
    day = today_in_seoul()
    started = time.monotonic()
    with objectstore.frozen(process), pytest.raises(LandingError) as caught:
        fetch_and_land(settings, landing, day, token_cache=TokenCache(tmp_path / "tokens"))
    took = time.monotonic() - started
    message = str(caught.value)
    # the first refused write stops the run
    assert took < 2 * objectstore.FROZEN_CALL_BOUND + 2, took
    raw_day = f"s3://{storage.bucket}/history/raw/CTRP6548R/snapshot_date={day}/12345678-01/"
    assert message.startswith(f"account 12345678-01: could not land its answer at {raw_day}")
    assert "did not answer within its limits" in message
    kept = Path(message.split("the answer is kept at ")[1].split(" and landed")[0])
    assert kept.is_file() and kept.stat().st_mode & 0o777 == 0o600
    answer = kept.read_bytes()
    # the next run, with the store back, lands the kept answer first (or finds it stored:
    # the refused PUT may have gone through once the store woke)
    assert kept.is_relative_to(tmp_path / "state")  # $XDG_STATE_HOME (this test's own)
    land_pending(landing)
    key = raw_day.removeprefix(f"s3://{storage.bucket}/history/") + kept.name
    assert storage.read_bytes(key) == answer
    assert not kept.exists()


def test_a_store_that_stops_answering_once_a_parquet_file_is_open_is_no_damaged_file(
    frozen_store: tuple[ObjectStorage, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow reads the pages through s3fs, where botocore's timeout is an OSError like a
    damaged file's: it was taken for one (DamagedFileError), and `make repair` would rebuild
    a good file."""
    storage, process = frozen_store
    key = "parquet/account_summary/snapshot_date=2026-03-16/data.parquet"
    staged = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": list(range(1000))}), staged)
    storage.write_bytes(key, staged.getvalue().to_pybytes())

    def open_then_freeze(location: Any) -> Any:
        opened = open_input(location)
        process.send_signal(signal.SIGSTOP)
        return opened

    monkeypatch.setattr(parquet, "open_input", open_then_freeze)
    try:
        with pytest.raises(StoreUnreachableError) as caught:
            parquet.verify(storage.location(key))
    finally:
        process.send_signal(signal.SIGCONT)
    assert str(caught.value).startswith(f"{storage.url_of(key)}: reading failed: ")
    assert "did not answer within its limits" in str(caught.value)
    monkeypatch.undo()
    parquet.verify(storage.location(key))  # whole, once the store answers


def test_a_store_that_does_not_answer_duckdbs_reads_is_named_not_taken_for_a_failing_view(
    frozen_store: tuple[ObjectStorage, Any], simulator: Simulator, tmp_path: Path
) -> None:
    """The views read the bucket through DuckDB, which passes on an error's text only: a read
    the store did not answer was a bare DuckDB error naming the endpoint's URL (a traceback in
    the run), and the view check took it for a failing view (`make verify`: a damaged
    warehouse)."""
    storage, process = frozen_store
    settings = Settings.from_env(
        frozen_store_environ(storage, simulator, tmp_path), env_file=tmp_path / "none.env"
    )
    day = today_in_seoul()
    fetch_and_land(settings, RawLanding(storage), day, token_cache=TokenCache(tmp_path / "tok"))
    build_days(storage, [day])
    path = warehouse.build(storage, path=settings.warehouse)
    tables = f"{storage.url}/parquet/"

    def rows(con: duckdb.DuckDBPyConnection) -> list[Any]:
        return con.sql("FROM net_asset_history").fetchall()

    with objectstore.frozen(process):
        with pytest.raises(StoreUnreachableError) as caught:
            warehouse.read(storage, path, rows)
        assert str(caught.value).startswith(tables), caught.value
        assert "did not answer within its limits" in str(caught.value)
        counts = {"account_summary": "FROM account_summary"}
        with warehouse.connect(storage, path) as con, pytest.raises(StoreUnreachableError) as got:
            list(view_check.failing_views(con, counts))  # not a view failing: the store
        assert str(got.value).startswith(tables), got.value
    assert len(warehouse.read(storage, path, rows)) == 2  # the store answers again


def test_verify_and_repair_cannot_run_while_the_store_does_not_answer(
    frozen_store: tuple[ObjectStorage, Any], simulator: Simulator, tmp_path: Path
) -> None:
    """Exit status 3 (it could not run), in one line naming the bucket: not 1, which says the
    data holds something `make repair` rebuilds."""
    storage, process = frozen_store
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "AWS_"))},
        **frozen_store_environ(storage, simulator, tmp_path),
    }
    with objectstore.frozen(process):
        for command in ("verify", "repair"):
            done = subprocess.run(
                [sys.executable, "-m", f"pipelines.commands.{command}"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 3, done.stdout + done.stderr
            [line] = done.stderr.splitlines()
            assert line.startswith(f"{command}: could not read the data root: {storage.url}/")
            assert "did not answer within its limits" in line
