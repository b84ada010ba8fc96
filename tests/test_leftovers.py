"""What killed writers leave behind is removed by the next run, once older than a run can live,
and never while a live process holds it: staged files on a local root and on s3:// (where an
upload never completed is aborted), a killed warehouse build's file and WAL, and the WAL of a
killed read-write `duckdb` session that would make the next warehouse unopenable.

Every leftover here is made by a real process killed with SIGKILL (tests/runs.py); ageing is
done by setting modification times back, as the clock would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.storage.base import STAGING
from pipelines.storage.files import LEFTOVER_AGE
from pipelines.storage.roots import ObjectStorage, Storage, open_root, parse_root
from pipelines.warehouse import warehouse
from tests import objectstore
from tests.runs import ONE_RUN, REPO, failure_text, kill_while_writing, materialize

OLDER_THAN_A_RUN = LEFTOVER_AGE + timedelta(hours=1)
KEY = "parquet/t/snapshot_date=2024-05-02/data.parquet"

#: A writer staging one file (argv: root, key), killed or left alive while it writes.
STAGED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pipelines.storage.roots import open_root, parse_root
    storage = open_root(parse_root(sys.argv[1], os.environ))
    with storage.staged(sys.argv[2]) as tmp:
        tmp.write_bytes(b"PAR1 half a file")
        print("writing", flush=True)
        time.sleep(120)
    """
)
#: A rebuild staging many files at once (argv: root), killed while it writes.
BATCH_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pipelines.storage.roots import open_root, parse_root
    storage = open_root(parse_root(sys.argv[1], os.environ))
    keys = [f"parquet/t/snapshot_date=2024-05-0{n}/data.parquet" for n in range(3, 7)]
    with storage.staged_many(keys) as temps:
        for tmp in temps:
            tmp.write_bytes(b"PAR1 half a file")
        print("writing", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return open_root(tmp_path / "root")
    return open_root(parse_root(request.getfixturevalue("s3_root"), os.environ))


def staging(storage: Storage) -> Path:
    """Where this machine stages the root's files."""
    base = storage.local_dir if isinstance(storage, ObjectStorage) else Path(str(storage.root))
    return base / STAGING


def age(*paths: Path, by: timedelta = OLDER_THAN_A_RUN) -> None:
    """Set modification times back, of each path and everything under it."""
    then = time.time() - by.total_seconds()
    for path in paths:
        for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
            os.utime(item, (then, then), follow_symlinks=False)


def start_writer(root: str, key: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", STAGED_WRITER, root, key]
    writer = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    return writer


def test_staged_files_of_killed_writers_go_once_old_and_a_live_writers_stay(
    storage: Storage,
) -> None:
    root = str(storage.root)
    storage.write_bytes(KEY, b"previous, whole")
    kill_while_writing(STAGED_WRITER, root, KEY)
    kill_while_writing(BATCH_WRITER, root)
    live = start_writer(root, "reports/portfolio-2024-05-02.html")
    try:
        left = sorted(staging(storage).iterdir())
        assert len(left) >= 3, left  # one per killed writer (s3: one per staged file), one live

        assert storage.sweep() == []  # younger than a run can live: kept
        assert sorted(staging(storage).iterdir()) == left

        age(*left)
        removed = storage.sweep()
        [kept] = staging(storage).iterdir()  # the live writer's, as old as the others
        assert sorted(removed) == sorted(str(p) for p in left if p != kept)
        assert storage.read_bytes(KEY) == b"previous, whole"
        assert not storage.exists("reports/portfolio-2024-05-02.html")
    finally:
        live.kill()
        live.wait(timeout=10)
    assert storage.sweep() == [str(kept)]  # its writer is dead now
    assert list(staging(storage).iterdir()) == []
    assert sorted(storage.files("")) == [KEY]


#: An upload of more than one part (as s3fs sends a file above 100 MB), killed midway.
KILLED_UPLOAD = textwrap.dedent(
    """
    import os, sys, time
    from pipelines.storage.roots import open_root, parse_root
    storage = open_root(parse_root(sys.argv[1], os.environ))
    with storage.fs.open(storage.url_of(sys.argv[2]), "wb", block_size=5 * 2**20) as out:
        out.write(b"x" * (6 * 2**20))
        out.flush()  # the first part is uploaded: the multipart upload exists
        print("writing", flush=True)
        time.sleep(120)
    """
)


def test_an_upload_a_killed_writer_never_completed_is_aborted_once_old(
    s3_root: str, s3_endpoint: str
) -> None:
    storage = open_root(parse_root(s3_root, os.environ))
    assert isinstance(storage, ObjectStorage)
    s3 = objectstore.client(s3_endpoint)
    kill_while_writing(KILLED_UPLOAD, s3_root, "compacted/t/2024-05.parquet")
    [upload] = s3.list_multipart_uploads(Bucket=storage.bucket)["Uploads"]
    assert upload["Key"] == "history/compacted/t/2024-05.parquet"

    # moto says every upload began on 2010-11-10 (a fixed date in its answers), so the age rule
    # shows with a longer age: an upload younger than it is kept, an older one aborted
    began = upload["Initiated"]
    assert storage.sweep(older_than=datetime.now(UTC) - began + timedelta(days=1)) == []
    assert len(s3.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])) == 1
    assert storage.sweep(older_than=datetime.now(UTC) - began - timedelta(days=1)) == [
        f"s3://{storage.bucket}/{upload['Key']} (upload {upload['UploadId']})"
    ]
    assert s3.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []) == []
    assert not storage.exists("compacted/t/2024-05.parquet")


#: A warehouse build killed once its views are committed (in DuckDB's WAL) and before they are
#: checkpointed into the new file: the moment is marked from the build's last step.
KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipelines.warehouse import warehouse
    comment_columns = warehouse._comment_columns
    def comment_commit_then_hang(con):
        comment_columns(con)
        con.execute("COMMIT")
        print("writing", flush=True)
        time.sleep(120)
    warehouse._comment_columns = comment_commit_then_hang
    warehouse.build(Path(sys.argv[1]))
    """
)


def test_a_killed_warehouse_builds_file_and_wal_go_at_the_next_build_once_old(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    warehouse.build(root)
    kill_while_writing(KILLED_BUILD, str(root))
    left = sorted(p for p in root.iterdir() if p.name.startswith(".warehouse.duckdb."))
    assert [p.name.endswith(".tmp.wal") for p in left] == [False, True], left

    warehouse.build(root)  # young: another build may own them
    assert all(p.exists() for p in left)
    age(*left)
    warehouse.build(root)
    assert not [p for p in root.iterdir() if p.name.startswith(".warehouse.duckdb.")]
    with warehouse.connect(root) as con:
        assert con.execute("SELECT count(*) FROM account_summary").fetchone() == (0,)


#: A read-write `duckdb` session on the warehouse (not -readonly), killed after a change.
KILLED_SESSION = textwrap.dedent(
    """
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE scratch AS SELECT 1 AS a")
    print("writing", flush=True)
    time.sleep(120)
    """
)


def test_a_killed_sessions_wal_does_not_break_the_next_warehouse(tmp_path: Path) -> None:
    """Replayed into the new file, such a WAL made DuckDB refuse to open it (an INTERNAL
    Error "Failure while replaying WAL file"), for every reader, until removed by hand."""
    root = tmp_path / "data"
    path = warehouse.build(root)
    kill_while_writing(KILLED_SESSION, str(path))
    assert path.with_name("warehouse.duckdb.wal").exists()
    warehouse.build(root)
    assert not path.with_name("warehouse.duckdb.wal").exists()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM account_summary").fetchone() == (0,)


def test_the_next_run_removes_what_a_killed_run_left(isolated_env: Path) -> None:
    """A real run through Dagster, killed while it stages files; the next run sweeps them."""
    days = [date(2024, 5, 1) + timedelta(days=n) for n in range(20)]
    script = ONE_RUN.replace(
        "materialize(date.fromisoformat(sys.argv[1]))",
        "materialize([date.fromisoformat(d) for d in sys.argv[1:]])",
    )
    run = subprocess.Popen(
        [sys.executable, "-c", script, *(d.isoformat() for d in days)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # killed while it stages the tables' files: every raw answer of the range is landed by then
    # (killed while landing them, the first day could keep one account of two, which a run of
    # a past day rebuilds from what was landed, never fetching the other)
    deadline = time.monotonic() + 120
    while not any(".parquet." in p.name for p in (isolated_env / STAGING).rglob("*")):
        assert run.poll() is None and time.monotonic() < deadline, "nothing staged to kill in"
        time.sleep(0.005)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    left = list((isolated_env / STAGING).iterdir())
    assert left
    age(*left)

    result = materialize(days[:1])
    assert result.success, failure_text(result)
    assert list((isolated_env / STAGING).iterdir()) == []
    with warehouse.connect(isolated_env) as con:
        assert con.execute("SELECT count(*) FROM account_summary").fetchone() == (2,)
