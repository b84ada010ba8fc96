"""An S3-compatible server on loopback for tests: moto's server mode, with fake credentials.

pyarrow, DuckDB and s3fs talk to it over real HTTP like to any store; nothing is mocked
in-process. Buckets are created here (the pipeline never creates one).
"""

from __future__ import annotations

import functools
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

#: The AWS_* variables a test's S3 root is configured with: a fake key, never a real one.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_REGION": "us-east-1",
}
#: Variables that could point a test at a real account or another endpoint: removed.
OTHER_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
)

#: Small limits (KIS_S3_* settings), so a frozen store fails each call within a second or two.
FROZEN_LIMITS = {
    "KIS_S3_CONNECT_TIMEOUT": "0.3",
    "KIS_S3_READ_TIMEOUT": "0.3",
    "KIS_S3_ATTEMPTS": "2",
}
#: Two tries of 0.3 s and botocore's backoff between them (at most 1 s), with room to spare
#: on a busy machine (botocore's defaults would wait 60 s per read; aiohttp forever on a PUT).
FROZEN_CALL_BOUND = 2 * 0.3 + 1.0 + 2.5


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def moto_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """moto's S3 server in a process of its own (one a test can SIGSTOP: a frozen store);
    yields its endpoint URL and the process. It is resumed and ended whatever happens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        ends = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > ends:
                    raise RuntimeError(f"moto's server did not start on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint, process
    finally:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def frozen(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """The store's process stopped (SIGSTOP) for the block: it accepts connections (the
    kernel does) and answers nothing; resumed (SIGCONT) after."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


@functools.cache
def client(endpoint: str) -> Any:
    """A plain botocore S3 client on the server, for what tests check behind the pipeline."""
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=FAKE_CREDENTIALS["AWS_REGION"],
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def new_bucket(endpoint: str) -> str:
    name = f"kis-test-{uuid.uuid4().hex[:12]}"
    client(endpoint).create_bucket(Bucket=name)
    return name


def keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every key in the bucket under `prefix`, sorted."""
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
