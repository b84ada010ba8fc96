"""Shared fixtures: an isolated environment, a real simulator on loopback, a token cache."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipelines.settings
from pipelines.kis.tokens import TokenCache
from pipelines.simulator import server as simulator_module
from pipelines.simulator.server import Simulator
from tests.dagster_state import forget_defs_state_storage

# postgres_server (a throwaway PostgreSQL for the session) and postgres_db (a database per test)
pytest_plugins = ("tests.postgres",)

#: Tests materialize any day since 2023, weekends too: every day is a capture day (partition).
#: Set before any test module imports the assets, whose partitions are built at import, and
#: kept for every test (and the processes tests start).
PARTITION_ENV = {"KIS_CAPTURE_DAYS": "mon-sun", "KIS_HISTORY_START": "2023-01-01"}
os.environ.update(PARTITION_ENV)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish() -> None:
    """Finalize now what tests left to the garbage collector (Dagster contexts that own an
    ephemeral instance, whose disposal logs an error with its traceback). Left to chance, a
    collection can fall inside the ast.parse of a module pytest imports for its summary
    (hypothesis's plugin does), and Python 3.11's traceback module parses source too: the
    nested parse breaks the outer one ("SystemError: AST constructor recursion depth
    mismatch"), and the session fails after every test passed."""
    gc.collect()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No KIS_* variable (but PARTITION_ENV), no developer .env, a private token cache, state
    (answers kept for a later run) and data root per test."""
    for name in list(os.environ):
        if name.startswith("KIS_"):
            monkeypatch.delenv(name)
    for name, value in PARTITION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(pipelines.settings, "ENV_FILE", tmp_path / "no.env")
    monkeypatch.setattr(pipelines.settings, "LEGACY_ENV_FILE", tmp_path / "no-legacy.env")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    data_root = tmp_path / "data"
    monkeypatch.setenv("KIS_DATA_ROOT", str(data_root))
    return data_root


@pytest.fixture(autouse=True)
def fresh_embedded_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that uses the embedded simulator gets its own, so throttling never spans tests."""
    monkeypatch.setattr(simulator_module, "_embedded", None)
    yield
    if simulator_module._embedded is not None:
        simulator_module._embedded.stop()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A fresh KIS simulator on a free loopback port (real HTTP)."""
    with Simulator() as sim:
        yield sim


@pytest.fixture
def token_cache(tmp_path: Path) -> TokenCache:
    return TokenCache(tmp_path / "tokens")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3-compatible server (moto) on loopback for the whole session."""
    from tests.objectstore import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_root(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """KIS_DATA_ROOT=s3://<a fresh bucket>/history on the loopback server, fake AWS_*
    variables (restored after the test) and a local KIS_WAREHOUSE."""
    from tests.objectstore import FAKE_CREDENTIALS, OTHER_AWS_VARIABLES, new_bucket

    for name in OTHER_AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    root = f"s3://{new_bucket(s3_endpoint)}/history"
    monkeypatch.setenv("KIS_DATA_ROOT", root)
    monkeypatch.setenv("KIS_WAREHOUSE", str(tmp_path / "local" / "warehouse.duckdb"))
    return root


@pytest.fixture(autouse=True)
def no_defs_state_storage_left_behind() -> Iterator[None]:
    """Each test starts and ends with no defs-state storage left by Dagster (see
    tests.dagster_state)."""
    forget_defs_state_storage()
    yield
    forget_defs_state_storage()
