"""A throwaway PostgreSQL server for tests: Debian's server binaries, a cluster in a temp dir.

The session starts one server on a free loopback port (as the `postgres` user when run as
root) and each test that asks for `postgres_db` gets a database of its own in it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

INSTALL_HINT = "`make postgres-server` installs them (Debian's `postgresql` package)"


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, else the PATH's."""
    found = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if (path.parent / "pg_ctl").exists()
    ]
    if found:
        return max(found, key=lambda bindir: int(re.sub(r"\D", "", bindir.parent.name) or 0))
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    """A running server on loopback, with a password-protected superuser."""

    host: str
    port: int
    username: str
    password: str

    def connect(self, db_name: str = "postgres") -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.username,
            password=self.password,
            dbname=db_name,
        )

    def create_database(self, db_name: str) -> str:
        connection = self.connect()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            connection.close()
        return db_name

    def dagster_env(self, db_name: str) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its PostgreSQL settings from."""
        return {
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_DB": db_name,
            "DAGSTER_PG_PORT": str(self.port),
        }


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: root runs it as the `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextlib.contextmanager
def running_postgres(bindir: Path) -> Iterator[PostgresServer]:
    """initdb a cluster in a fresh temp dir, start it on loopback, stop and remove it after."""
    root = Path(tempfile.mkdtemp(prefix="kis-postgres-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    password = secrets.token_hex(16)
    (root / "pwfile").write_text(password + "\n")
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for path in (root / "pwfile", sockets):
            shutil.chown(path, "postgres")
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run(
            _as_server_user(
                [
                    str(bindir / "initdb"),
                    "--pgdata",
                    str(data),
                    "--username",
                    "dagster",
                    "--pwfile",
                    str(root / "pwfile"),
                    "--auth-local",
                    "trust",
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        for _attempt in range(3):
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200"
            )
            completed = subprocess.run(
                _as_server_user([*pg_ctl, "-l", str(log), "-o", options, "-w", "start"]),
                capture_output=True,
                timeout=90,
            )
            if completed.returncode == 0:
                started = True
                break
        if not started:
            raise RuntimeError(f"PostgreSQL did not start: {log.read_text()[-2000:]}")
        yield PostgresServer(host="127.0.0.1", port=port, username="dagster", password=password)
    finally:
        if started:
            subprocess.run(
                _as_server_user([*pg_ctl, "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway server for the session. Missing binaries fail in CI and skip elsewhere."""
    bindir = server_binaries()
    if bindir is None:
        message = f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with running_postgres(bindir) as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database in the session's server, named after the test."""
    name = re.sub(r"\W", "_", request.node.name.lower())[:40]
    return postgres_server.create_database(f"{name}_{secrets.token_hex(3)}")
