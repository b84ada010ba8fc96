"""Many app keys side by side: the pipeline's fetch against the one-key floor and the machine.

The simulator runs in its own process (as KIS is another machine), enforcing 20 requests/s
per app key. Measured: `fetch.fetch_and_land` (client, pacing, landing of every answer) with
K keys × 40 accounts, tokens already cached (a warm-up run issues them). Floors, side by
side: 40/20 s (one key's accounts can go no faster, and keys are independent), and the
machine's own ceiling: the same requests to the same simulator from a bare thread pool of
`requests` calls, one thread per key paced at the server's 20/s, no pipeline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import env_int, median, seconds, verdict
from pipelines.ingest.fetch import fetch_and_land, today_in_seoul
from pipelines.ingest.landing import RawLanding
from pipelines.kis import protocol
from pipelines.kis.tokens import TokenCache
from pipelines.settings import Settings

SERVER_LIMIT = 20.0
ACCOUNTS_PER_KEY = 40
TARGET_FIVE_KEYS = 1.25  # × one key's time
TARGET_CEILING = 0.75  # share of the machine's own request rate


class SimulatorProcess:
    """`kis-simulator` on a free loopback port, in a process of its own."""

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.simulator.server", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"http://[0-9.]+:[0-9]+", line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")
        return match.group(0)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def accounts_file(folder: Path, keys: int) -> tuple[Path, dict[str, str]]:
    entries, environ = [], {}
    for key in range(keys):
        environ[f"BENCH_KEY_{key}"] = f"BENCH-KEY-{key:03d}"
        environ[f"BENCH_SECRET_{key}"] = f"bench-secret-{key:03d}"
        for n in range(ACCOUNTS_PER_KEY):
            entries.append(
                f'[[account]]\nid = "{7000 + key:04d}{n:04d}-01"\n'
                f'app_key_env = "BENCH_KEY_{key}"\napp_secret_env = "BENCH_SECRET_{key}"\n'
            )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"accounts-{keys}.toml"
    path.write_text("\n".join(entries))
    return path, environ


def pipeline_fetch(base_url: str, folder: Path, keys: int, in_flight: int) -> float:
    """Seconds for one `fetch_and_land` of every account (after a warm-up that issues tokens)."""
    path, environ = accounts_file(folder, keys)
    settings = Settings.from_env(
        {
            **environ,
            "KIS_ENV": "real",
            "KIS_BASE_URL": base_url,
            "KIS_ACCOUNTS_FILE": str(path),
            "KIS_DATA_ROOT": str(folder / f"data-{keys}"),
            "KIS_KEYS_IN_FLIGHT": str(in_flight),
        },
        env_file=folder / "none.env",
    )
    cache = TokenCache(folder.parent / "tokens")  # shared by every run: one token per key
    landing, day = RawLanding(settings.data_root), today_in_seoul()
    fetch_and_land(settings, landing, day, token_cache=cache)  # warm-up: tokens issued
    time.sleep(1.0)  # the server's one-second windows drain
    started = time.perf_counter()
    report = fetch_and_land(settings, landing, day, token_cache=cache)
    elapsed = time.perf_counter() - started
    if report.failures or report.events["retries_EGW00201"]:
        raise RuntimeError(f"refused or failed: {report.events} {list(report.failures)[:3]}")
    return elapsed


def ceiling_tokens(base_url: str, keys: int) -> dict[int, str]:
    """One token per key of the bare pool, issued once (KIS allows one a minute per key)."""
    tokens = {}
    for key in range(keys):
        body = {
            "grant_type": "client_credentials",
            "appkey": f"CEILING-{key:03d}",
            "appsecret": f"ceiling-secret-{key:03d}",
        }
        answer = requests.post(base_url + protocol.TOKEN_PATH, json=body, timeout=10).json()
        tokens[key] = answer["access_token"]
    return tokens


def bare_ceiling(base_url: str, tokens: dict[int, str]) -> tuple[float, int]:
    """Seconds for the same requests from a bare thread pool (one thread per key, paced at
    the server's limit), and how many the server refused."""
    keys = len(tokens)
    refused = 0
    lock = threading.Lock()

    def one_key(key: int) -> None:
        nonlocal refused
        session = requests.Session()
        headers = {
            "authorization": f"Bearer {tokens[key]}",
            "appkey": f"CEILING-{key:03d}",
            "appsecret": f"ceiling-secret-{key:03d}",
            "tr_id": protocol.BALANCE_TR_ID,
            "custtype": "P",
        }
        slot = time.monotonic()
        for n in range(ACCOUNTS_PER_KEY):
            slot = max(slot + 1.0 / SERVER_LIMIT, time.monotonic())
            time.sleep(max(0.0, slot - time.monotonic()))
            params = {"CANO": f"{8000 + key:04d}{n:04d}", "ACNT_PRDT_CD": "01"}
            params |= {"INQR_DVSN_1": "", "BSPR_BF_DT_APLY_YN": ""}
            answer = session.get(
                base_url + protocol.BALANCE_PATH, params=params, headers=headers, timeout=30
            )
            if json.loads(answer.text).get("rt_cd") != "0":
                with lock:
                    refused += 1

    time.sleep(1.0)
    started = time.perf_counter()
    with ThreadPoolExecutor(keys) as pool:
        list(pool.map(one_key, range(keys)))
    return time.perf_counter() - started, refused


def rows() -> list[list[str]]:
    repeats = env_int("BENCH_KEYS_RUNS", 3, 1)
    many = env_int("BENCH_KEYS_MANY", 50, 20)
    floor = ACCOUNTS_PER_KEY / SERVER_LIMIT
    results: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as tmp, SimulatorProcess() as url:
        folder = Path(tmp)
        for keys in (1, 5):
            results[keys] = median(
                [pipeline_fetch(url, folder / f"r{r}", keys, 8) for r in range(repeats)]
            )
        ours = [pipeline_fetch(url, folder / f"m{r}", many, many) for r in range(repeats)]
        tokens = ceiling_tokens(url, many)
        ceiling = [bare_ceiling(url, tokens) for _ in range(repeats)]
    many_time = median(ours)
    five = results[5] / results[1]
    ceiling_time = median([t for t, _ in ceiling])
    requests_total = many * ACCOUNTS_PER_KEY
    share = ceiling_time / many_time
    note = f"median of {repeats}; tokens cached; simulator in its own process, 20/s per key"
    return [
        [
            f"fetch 1 key × {ACCOUNTS_PER_KEY} accounts (fetch_and_land, landed)",
            seconds(results[1]),
            f"{seconds(floor)} ({ACCOUNTS_PER_KEY}/20)",
            f"{results[1] / floor:.2f}×",
            "—",
            note,
        ],
        [
            f"fetch 5 keys × {ACCOUNTS_PER_KEY} accounts, side by side",
            seconds(results[5]),
            f"{seconds(results[1])} (1 key × {ACCOUNTS_PER_KEY}, same run)",
            f"{five:.2f}×",
            f"≤ {TARGET_FIVE_KEYS}× one key: {verdict(five <= TARGET_FIVE_KEYS)}",
            f"{note}; KIS_KEYS_IN_FLIGHT=8; no request refused",
        ],
        [
            f"fetch {many} keys × {ACCOUNTS_PER_KEY} accounts ({requests_total:,} requests)",
            f"{seconds(many_time)} ({requests_total / many_time:.0f} req/s)",
            f"{seconds(ceiling_time)} ({requests_total / ceiling_time:.0f} req/s: bare thread "
            f"pool, one thread per key paced at 20/s; floor {seconds(floor)})",
            f"{share:.0%} of the machine's ceiling",
            f"≥ {TARGET_CEILING:.0%}: {verdict(share >= TARGET_CEILING)}",
            f"{note}; KIS_KEYS_IN_FLIGHT={many}; ceiling refusals: "
            f"{sum(r for _, r in ceiling)}; the 2 cores are the limit here",
        ],
    ]
