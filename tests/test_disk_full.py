"""A full disk while landing: the error names the file and the account, and the fetched answer
is kept on this machine and landed by the next run. The data root is a real 64 KiB tmpfs
(mounting one needs root or CAP_SYS_ADMIN; elsewhere the test is skipped, saying why)."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.errors import LandingError
from pipelines.ingest.fetch import fetch_and_land, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis.tokens import TokenCache
from pipelines.settings import Settings
from pipelines.simulator.faults import FaultPlan
from pipelines.simulator.server import Simulator

ACCOUNTS = ("12345678-01", "12345678-21")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for the test and unmounted after."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"no mount(8) to make a small tmpfs with ({error})")
    if done.returncode != 0:
        pytest.skip(
            "cannot mount a 64 KiB tmpfs here (needs root or CAP_SYS_ADMIN): "
            + (done.stderr.strip() or f"mount exited {done.returncode}")
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10, check=False)


def fill(path: Path) -> None:
    """Write to `path` until the disk is full."""
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    assert path.stat().st_size > 0


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_a_full_disk_names_file_and_account_and_the_next_run_lands_the_answer(
    small_disk: Path, simulator: Simulator, tmp_path: Path
) -> None:
    environ = {
        "KIS_ENV": "sim",
        "KIS_BASE_URL": simulator.base_url,
        "KIS_ACCOUNTS": ",".join(ACCOUNTS),
        "KIS_DATA_ROOT": str(small_disk / "data"),
    }
    settings = Settings.from_env(environ, env_file=tmp_path / "none.env")
    landing, day = RawLanding(settings.data_root), today_in_seoul()
    tokens = TokenCache(tmp_path / "tokens")
    fill(small_disk / "filler")

    report = fetch_and_land(settings, landing, day, token_cache=tokens)

    assert list(report.failures) == list(ACCOUNTS) and not report.landed
    kept: dict[str, Path] = {}
    answers: dict[str, bytes] = {}
    for account in ACCOUNTS:
        failure = report.failures[account]
        message = str(failure)
        assert isinstance(failure, LandingError) and "\n" not in message
        raw_dir = small_disk / "data" / "raw" / "CTRP6548R" / f"snapshot_date={day}" / account
        assert message.startswith(f"account {account}: could not land its answer at {raw_dir}/")
        assert "[Errno 28] No space left on device" in message
        path = Path(message.split("the answer is kept at ")[1].split(" and landed")[0])
        assert path.is_relative_to(tmp_path / "state")  # $XDG_STATE_HOME, another disk
        assert path.name == message.split(f"{raw_dir}/")[1].split(":")[0]  # the same name
        assert path.stat().st_mode & 0o777 == 0o600
        assert json.loads(path.read_bytes())["account_id"] == account
        kept[account], answers[account] = path, path.read_bytes()
    # nothing half-written is left on the full disk
    assert files_under(small_disk) == [small_disk / "filler"]

    # room again; the next run lands the kept answers first, even though its own fetch fails
    (small_disk / "filler").unlink()
    simulator.faults = FaultPlan.parse("*:business_error")
    again = fetch_and_land(settings, landing, day, token_cache=tokens)
    assert list(again.failures) == list(ACCOUNTS) and not again.landed
    latest = landing.latest_files(day)
    assert [where.parent.name for where in latest] == list(ACCOUNTS)
    for where in latest:  # exactly the answers fetched while the disk was full
        assert where.name == kept[where.parent.name].name
        assert where.read_bytes() == answers[where.parent.name]
    assert not any(path.exists() for path in kept.values())
