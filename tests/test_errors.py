"""The project's errors: one base in pipelines.errors; through Dagster, a project error fails its
run in one line, and any other exception (a bug) keeps its traceback in the run's event log."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from datetime import timedelta

import pytest

import pipelines
from pipelines.errors import KisBalanceError
from pipelines.ingest.fetch import today_in_seoul
from pipelines.simulator.server import Simulator
from pipelines.tidy import build
from tests.runs import materialize


def project_exceptions() -> list[type[BaseException]]:
    """Every exception class a module of pipelines/ defines (not one it imports)."""
    found = []
    for module_info in pkgutil.walk_packages(pipelines.__path__, "pipelines."):
        if module_info.name.endswith(".__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_public_exception_of_the_project_derives_from_its_base() -> None:
    classes = project_exceptions()
    assert len(classes) > 20  # the walk found the modules
    strays = [
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if not c.__name__.startswith("_") and not issubclass(c, KisBalanceError)
    ]
    assert not strays


def test_a_project_error_fails_the_run_in_one_line(
    monkeypatch: pytest.MonkeyPatch, simulator: Simulator
) -> None:
    # a real account's past day with nothing landed on it: MissingRawError, a data error
    monkeypatch.setenv("KIS_ENV", "real")
    monkeypatch.setenv("KIS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("KIS_APP_KEY", "TEST-APP-KEY")
    monkeypatch.setenv("KIS_APP_SECRET", "test-app-secret-value")
    monkeypatch.setenv("KIS_ACCOUNTS", "12345678-01")
    yesterday = today_in_seoul() - timedelta(days=1)
    result = materialize(yesterday)
    assert not result.success
    [event] = result.get_step_failure_events()
    assert event.step_key == "kis_balance_raw"
    data = event.step_failure_data
    assert data.user_failure_data is not None and data.error is not None
    description = data.user_failure_data.description or ""
    assert description.startswith(f"No raw balance was landed for {yesterday}")
    assert "\n" not in description and "Traceback" not in description
    assert data.error.cls_name == "Failure"
    assert simulator.requests["balance"] == 0


def test_an_unexpected_error_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def a_bug(*args: object, **kwargs: object) -> None:
        raise ValueError("invalid literal for int() with base 10: 'x'")

    monkeypatch.setattr(build, "build_days", a_bug)
    result = materialize(today_in_seoul())
    assert not result.success
    [event] = result.get_step_failure_events()
    data = event.step_failure_data
    assert data.user_failure_data is None  # not turned into an explained Failure
    assert data.error is not None
    error = data.error.cause if data.error.cls_name != "ValueError" else data.error
    assert error is not None and error.cls_name == "ValueError"
    assert "invalid literal for int()" in error.message
    assert any("a_bug" in line for line in error.stack), error.stack
