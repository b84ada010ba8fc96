"""A local data root against an s3:// one, side by side: a one-day run and reporting queries.

The object store is moto's S3 server on loopback (no network latency: what is measured is the
work of going through an object store, not a distance). One day: `dagster asset materialize`
as in materialize_cli, with KIS_DATA_ROOT local or s3://…. Queries: BENCH_ROOTS_DAYS days of 20
accounts' history written to both roots and its closed months compacted (as runs leave
them), views built by `warehouse.build`, read through
`warehouse.connect` (the S3 store registered on the connection).
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench import materialize_cli
from bench.common import env_int, median, seconds
from bench.report_queries import FIRST_DAY, write_history
from pipelines.lake.compaction import CompactedMonths
from pipelines.storage.roots import parse_root
from pipelines.warehouse import warehouse

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_REGION": "us-east-1",
}
QUERIES = {
    "`SELECT * FROM net_asset_history`": "SELECT * FROM net_asset_history",
    "one day of `asset_categories`": (
        "SELECT * FROM asset_categories WHERE snapshot_date = DATE '{day}'"
    ),
}


def _timed(work: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return median(times)


def rows() -> list[list[str]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    runs = env_int("BENCH_ROOTS_RUNS", 3, 2)
    day_count = env_int("BENCH_ROOTS_DAYS", 365, 60)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        import botocore.session

        botocore.session.get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=CREDENTIALS["AWS_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="bench")
        s3_env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
        command = materialize_cli.materialize_command("pipelines.definitions")
        with tempfile.TemporaryDirectory(prefix="bench-roots-") as tmp:
            local_day, _ = materialize_cli.timed_runs(command, runs)
            s3_day, _ = materialize_cli.timed_runs(
                command,
                runs,
                extra_env={
                    **s3_env,
                    "KIS_DATA_ROOT": "s3://bench/one-day",
                    "KIS_WAREHOUSE": str(Path(tmp) / "one-day.duckdb"),
                },
            )
            roots = {
                "local": (Path(tmp) / "data", Path(tmp) / "local.duckdb"),
                "s3": (parse_root("s3://bench/history", s3_env), Path(tmp) / "s3.duckdb"),
            }
            query_times: dict[str, dict[str, float]] = {}
            for name, (root, path) in roots.items():
                write_history(root, day_count, 20)  # type: ignore[arg-type]
                CompactedMonths(root).refresh(date.today())  # closed months, as runs leave them
                warehouse.build(root, path=path)
                last = FIRST_DAY + timedelta(days=day_count - 1)
                with warehouse.connect(root, path) as con:
                    con.execute("SET enable_progress_bar = false")
                    query_times[name] = {}
                    for label, sql in QUERIES.items():
                        text = sql.format(day=last.isoformat())
                        con.sql(text).to_arrow_table()  # warm
                        query_times[name][label] = _timed(
                            lambda text=text, con=con: con.sql(text).to_arrow_table(), 5
                        )
    finally:
        server.stop()
    note = f"moto's S3 server on loopback; median of {runs} after 1 warm-up"
    table = [
        [
            "one day from the shell (`dagster asset materialize`), s3:// root",
            seconds(s3_day),
            f"{seconds(local_day)} (local root, same run)",
            f"{s3_day / local_day:.2f}×",
            "—",
            f"{note}; simulator, 1 account",
        ]
    ]
    for label in QUERIES:
        s3_time, local_time = query_times["s3"][label], query_times["local"][label]
        table.append(
            [
                f"{label} over {day_count} days × 20 accounts, s3:// root, warm",
                seconds(s3_time),
                f"{seconds(local_time)} (local root)",
                f"{s3_time / local_time:.1f}×",
                "—",
                "median of 5 on one connection (warehouse.connect: s3fs registered on it)",
            ]
        )
    return table
