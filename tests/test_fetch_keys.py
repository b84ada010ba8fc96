"""App keys fetched side by side in one run: each key paced alone, never two at once per key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.ingest.fetch import fetch_and_land, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis.tokens import TokenCache
from pipelines.settings import Settings, SettingsError
from pipelines.simulator.faults import FaultPlan
from pipelines.simulator.server import Simulator

KEYS = 3
ACCOUNTS_PER_KEY = 2


def settings_for(sim: Simulator, tmp_path: Path, **extra: str) -> Settings:
    entries, environ = [], {}
    for key in range(KEYS):
        environ[f"KEY_{key}"], environ[f"SECRET_{key}"] = f"APP-KEY-{key}", f"secret-{key}"
        for n in range(ACCOUNTS_PER_KEY):
            entries.append(
                f'[[account]]\nid = "{key + 1}000000{n}-01"\n'
                f'app_key_env = "KEY_{key}"\napp_secret_env = "SECRET_{key}"\n'
            )
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text("\n".join(entries))
    environ |= {
        "KIS_ENV": "real",
        "KIS_BASE_URL": sim.base_url,
        "KIS_ACCOUNTS_FILE": str(accounts_file),
        "KIS_DATA_ROOT": str(tmp_path / "data"),
        **extra,
    }
    return Settings.from_env(environ, env_file=tmp_path / "none.env")


@pytest.mark.parametrize(("in_flight", "peak"), [("8", KEYS), ("1", 1)])
def test_keys_are_fetched_side_by_side_up_to_the_bound(
    simulator: Simulator, tmp_path: Path, in_flight: str, peak: int
) -> None:
    simulator.faults = FaultPlan.parse("*:slow=0.3")  # long enough for every key to overlap
    settings = settings_for(simulator, tmp_path, KIS_KEYS_IN_FLIGHT=in_flight)
    landing = RawLanding(settings.data_root)
    report = fetch_and_land(
        settings, landing, today_in_seoul(), token_cache=TokenCache(tmp_path / "tokens")
    )
    assert not report.failures
    assert len(report.landed) == KEYS * ACCOUNTS_PER_KEY
    # landed in configuration order, whichever key finished first
    assert [p.parent.name for p in report.landed] == [a.id for a in settings.accounts]
    assert simulator.peak_in_flight["*"] == peak
    for key in range(KEYS):  # one key's accounts one after another: its limiter paces them
        assert simulator.peak_in_flight[f"APP-KEY-{key}"] == 1
    assert report.events["tokens_issued"] == KEYS


def test_one_keys_failure_does_not_stop_the_other_keys(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.faults = FaultPlan.parse("20000000-01:business_error")
    settings = settings_for(simulator, tmp_path)
    report = fetch_and_land(
        settings,
        RawLanding(settings.data_root),
        today_in_seoul(),
        token_cache=TokenCache(tmp_path / "tokens"),
    )
    assert list(report.failures) == ["20000000-01"]
    assert len(report.landed) == KEYS * ACCOUNTS_PER_KEY - 1


@pytest.mark.parametrize("name", ["KIS_KEYS_IN_FLIGHT", "KIS_SHARDS"])
@pytest.mark.parametrize("value", ["0", "-1", "two", "1000"])
def test_counts_must_be_small_positive_numbers(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value}, env_file=tmp_path / "none.env")


def test_shards_split_accounts_by_app_key(simulator: Simulator, tmp_path: Path) -> None:
    settings = settings_for(simulator, tmp_path, KIS_SHARDS="2")
    shards = [settings.in_shard(i).accounts for i in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(settings.accounts)
    keys = [{settings.account_credentials[a].app_key for a in shard} for shard in shards]
    assert keys == [{"APP-KEY-0", "APP-KEY-2"}, {"APP-KEY-1"}]  # keys in order, round robin
    with pytest.raises(SettingsError, match="shards 0 to 1"):
        settings.in_shard(2)
