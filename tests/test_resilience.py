"""Faults injected by the simulator over real HTTP, and what the client and the run do."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests

from pipelines.errors import FaultSpecError
from pipelines.ingest.fetch import today_in_seoul
from pipelines.ingest.landing import RawLanding, read_snapshot
from pipelines.kis import layouts
from pipelines.kis.client import Credentials, KisClient, KisGatewayError
from pipelines.kis.protocol import Account, CorporateIdentity, KisApiError
from pipelines.kis.ratelimit import RateLimiter
from pipelines.kis.retry import Backoff
from pipelines.kis.tokens import SEOUL, TokenCache
from pipelines.simulator.faults import FaultPlan
from pipelines.simulator.portfolio import balance_body
from pipelines.simulator.server import Simulator
from tests.runs import failure, materialize

ACCOUNT = Account("12345678", "01")
FAST = Backoff(attempts=5, base=0.01, cap=0.05)
SECRET = "resilience-secret-value-42"


def client_for(sim: Simulator, cache: TokenCache, **kwargs: object) -> KisClient:
    options: dict = {"backoff": FAST, "rate_limiter": RateLimiter(1000), **kwargs}
    return KisClient(sim.base_url, Credentials("APP-KEY-R", SECRET), token_cache=cache, **options)


def sim_today(sim: Simulator) -> date:
    from datetime import datetime

    return datetime.fromtimestamp(sim.clock(), SEOUL).date()


def output1(response_pages: tuple) -> list[dict]:
    rows: list[dict] = []
    for page in response_pages:
        rows.extend(json.loads(page.body)["output1"])
    return rows


@pytest.mark.parametrize(
    ("fault", "event"),
    [
        ("rate_limit*2", "retries_EGW00201"),
        ("server_error*2", "retries_KisGatewayError"),
        ("html_error*3", "retries_KisGatewayError"),
        ("expired_token*1", "token_renewals"),
    ],
)
def test_transient_faults_are_survived_with_exact_data(
    token_cache: TokenCache, fault: str, event: str
) -> None:
    # token_interval=0: the re-issue after EGW00123 comes seconds after the first issuance,
    # which the real service would throttle; real expiries come a day later.
    with Simulator(faults=f"{ACCOUNT.id}:{fault}", token_interval=0) as sim:
        client = client_for(sim, token_cache)
        response = client.inquire_account_balance(ACCOUNT)
        assert output1(response.pages) == balance_body(ACCOUNT, sim_today(sim))["output1"]
        assert client.events[event] >= 1
        if fault == "expired_token*1":
            assert sim.requests["token_issued"] == 2  # re-issued exactly once


def test_a_hung_response_times_out_and_is_retried(token_cache: TokenCache) -> None:
    with Simulator(faults=f"{ACCOUNT.id}:hang*1=3") as sim:
        client = client_for(sim, token_cache, timeout=(1.0, 0.5))
        response = client.inquire_account_balance(ACCOUNT)
        assert len(output1(response.pages)) == 20
        assert client.events["retries_KisTransientError"] == 1


def test_retries_are_bounded_and_then_say_so(token_cache: TokenCache) -> None:
    with Simulator(faults=f"{ACCOUNT.id}:html_error") as sim:
        client = client_for(sim, token_cache)
        with pytest.raises(KisGatewayError, match="still failing after 5 attempts") as caught:
            client.inquire_account_balance(ACCOUNT)
        assert "502 Bad Gateway" in str(caught.value)
        assert ACCOUNT.id in str(caught.value)
        assert sim.requests["fault_html_error"] == 5


def test_business_errors_are_not_retried(token_cache: TokenCache) -> None:
    with Simulator(faults=f"{ACCOUNT.id}:business_error") as sim:
        client = client_for(sim, token_cache)
        with pytest.raises(KisApiError) as caught:
            client.inquire_account_balance(ACCOUNT)
        assert caught.value.msg_cd == "OPSQ2002"
        assert sim.requests["balance"] == 1
        assert not any(key.startswith("retries") for key in client.events)


def test_rate_limit_shared_by_the_process_prevents_refusals(token_cache: TokenCache) -> None:
    accounts = [Account(f"1000{n:04d}", "01") for n in range(30)]
    with Simulator(rate_limit=20) as sim:
        limiter = RateLimiter(18)
        clients = [client_for(sim, token_cache, rate_limiter=limiter) for _ in range(2)]
        threads = [
            threading.Thread(
                target=lambda c=c, part=accounts[i::2]: [c.inquire_account_balance(a) for a in part]
            )
            for i, c in enumerate(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sim.requests["balance"] == 30
        assert sim.requests["rate_limited"] == 0


def test_without_pacing_the_server_refuses_and_backoff_recovers(token_cache: TokenCache) -> None:
    with Simulator(rate_limit=3) as sim:
        client = client_for(sim, token_cache, backoff=Backoff(attempts=8, base=0.2, cap=1.0))
        for n in range(6):
            client.inquire_account_balance(Account(f"2000{n:04d}", "01"))
        assert sim.requests["rate_limited"] >= 1
        assert client.events["retries_EGW00201"] == sim.requests["rate_limited"]


def test_token_throttle_is_waited_out_not_failed(tmp_path: Path) -> None:
    with Simulator(token_interval=1.0) as sim:
        first = client_for(sim, TokenCache(tmp_path / "a"))
        second = client_for(sim, TokenCache(tmp_path / "b"), token_throttle_wait=1.1)
        first.access_token()
        second.access_token()  # EGW00133 at first, then issued after the wait
        assert second.events["token_throttle_waits"] == 1
        assert sim.requests["token_issued"] == 2


def test_runs_starting_together_issue_one_token(tmp_path: Path) -> None:
    """Two processes sharing the token cache: the file lock makes one of them wait."""
    with Simulator() as sim:
        script = (
            "import sys, pathlib\n"
            "from pipelines.kis.client import KisClient, Credentials\n"
            "from pipelines.kis.tokens import TokenCache\n"
            "from pipelines.kis.protocol import Account\n"
            "c = KisClient(sys.argv[1], Credentials('APP-KEY-R', 's'),"
            " token_cache=TokenCache(pathlib.Path(sys.argv[2])))\n"
            "c.inquire_account_balance(Account('12345678', '01'))\n"
        )
        repo = Path(__file__).resolve().parents[1]
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", script, sim.base_url, str(tmp_path / "tokens")], cwd=repo
            )
            for _ in range(2)
        ]
        assert [run.wait(timeout=60) for run in runs] == [0, 0]
        assert sim.requests["token_issued"] == 1
        assert sim.requests["balance"] == 2
        [token_file] = (tmp_path / "tokens").glob("*.json")
        assert token_file.stat().st_mode & 0o777 == 0o600


def test_continuation_pages_are_followed_and_merged(
    token_cache: TokenCache, tmp_path: Path
) -> None:
    account = Account("12345678", "21")
    with Simulator(faults=f"{account.id}:pages*1=3") as sim:
        client = client_for(sim, token_cache)
        response = client.inquire_account_balance(account)
        assert [p.tr_cont for p in response.pages] == ["M", "M", "D"]
        path = RawLanding(tmp_path).land(response, sim_today(sim), source={"env": "sim"})
        snapshot = read_snapshot(path)
        assert snapshot.output1 == balance_body(account, sim_today(sim))["output1"]


def test_corporate_headers_with_a_fresh_gt_uid_per_request(token_cache: TokenCache) -> None:
    identity = CorporateIdentity("corp-key-secret", "01011112222", "203.0.113.7")
    with Simulator() as sim:
        client = client_for(sim, token_cache, custtype="B", corporate=identity)
        for _ in range(3):
            client.inquire_account_balance(ACCOUNT)  # the simulator refuses a repeated gt_uid
        token = client.access_token()
        # without the corporate headers the simulator refuses, naming the missing one
        answer = requests.get(
            sim.base_url + "/uapi/domestic-stock/v1/trading/inquire-account-balance",
            headers={
                "authorization": f"Bearer {token}",
                "appkey": "APP-KEY-R",
                "appsecret": SECRET,
                "tr_id": "CTRP6548R",
                "custtype": "B",
            },
            params={
                "CANO": "12345678",
                "ACNT_PRDT_CD": "01",
                "INQR_DVSN_1": "",
                "BSPR_BF_DT_APLY_YN": "",
            },
            timeout=5,
        ).json()
        assert answer["msg_cd"] == "OPSQ1003" and "personalseckey" in answer["msg1"]


def test_fault_specs_are_checked() -> None:
    plan = FaultPlan.parse("*:rate_limit*2, 12345678-21:pages=3")
    assert [str(f) for f in plan.faults] == ["*:rate_limit*2", "12345678-21:pages=3"]
    assert plan.take("99999999-01", {"rate_limit"}) is not None
    assert plan.take("99999999-01", {"rate_limit"}) is not None
    assert plan.take("99999999-01", {"rate_limit"}) is None  # used up
    for bad in ("rate_limit", "*:melt", "*:hang=soon", "*:pages*x"):
        with pytest.raises(FaultSpecError):
            FaultPlan.parse(bad)


# -- through Dagster ----------------------------------------------------------------------


@pytest.fixture
def real_mode(monkeypatch: pytest.MonkeyPatch, simulator: Simulator, tmp_path: Path) -> Simulator:
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        '[[account]]\nid = "12345678-01"\n\n'
        '[[account]]\nid = "12345678-21"\n\n'
        '[[account]]\nid = "87654321-01"\napp_key_env = "PARENTS_KEY"\n'
        'app_secret_env = "PARENTS_SECRET"\n'
    )
    for name, value in {
        "KIS_ENV": "real",
        "KIS_BASE_URL": simulator.base_url,
        "KIS_APP_KEY": "OWN-KEY",
        "KIS_APP_SECRET": SECRET,
        "KIS_ACCOUNTS_FILE": str(accounts_file),
        "PARENTS_KEY": "PARENTS-KEY",
        "PARENTS_SECRET": SECRET + "-parents",
    }.items():
        monkeypatch.setenv(name, value)
    return simulator


def test_accounts_file_with_two_keys_fetches_everything_once_per_key(
    real_mode: Simulator, isolated_env: Path
) -> None:
    today = today_in_seoul()
    assert materialize(today).success
    assert materialize(today).success  # a second run reuses both cached tokens
    assert real_mode.requests["token_issued"] == 2
    landed = sorted(p.parent.name for p in RawLanding(isolated_env).latest_files(today))
    assert landed == ["12345678-01", "12345678-21", "87654321-01"]
    for path in isolated_env.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def views(data_root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).fetchall()


def test_one_failing_account_is_named_and_the_others_reach_the_views(
    real_mode: Simulator, isolated_env: Path
) -> None:
    today = today_in_seoul()
    real_mode.faults = FaultPlan.parse("87654321-01:business_error")
    result = materialize(today)
    assert not result.success
    description, metadata = failure(result)
    assert "1 of 3 accounts failed" in description and "87654321-01" in description
    assert "OPSQ2002" in description
    assert metadata["failed_accounts"]["87654321-01"]["msg_cd"] == "OPSQ2002"
    assert (
        metadata["failed_accounts"]["87654321-01"]["msg1"] == "ERROR : 조회 권한이 없는 계좌입니다"
    )
    # the healthy accounts are written, in the views and in the report all the same
    assert views(isolated_env, "SELECT account_id FROM account_summary ORDER BY 1") == [
        ("12345678-01",),
        ("12345678-21",),
    ]
    assert (isolated_env / "reports" / f"portfolio-{today}.html").exists()
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["every_account_captured"] is False
    # the answer that failed it is kept in quarantine, and the run says where
    (raw,) = [
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey("kis_balance_raw")
    ]
    kept = raw.metadata["quarantined_answers"].value
    assert isinstance(kept, dict) and list(kept) == ["87654321-01"]
    quarantine = isolated_env / "raw" / "quarantine" / "CTRP6548R" / f"snapshot_date={today}"
    assert Path(kept["87654321-01"]).parent == quarantine / "87654321-01"
    assert json.loads(Path(kept["87654321-01"]).read_text())["answer"]["status"] == 200


def test_a_failed_refetch_keeps_the_accounts_earlier_answer(
    real_mode: Simulator, isolated_env: Path
) -> None:
    today = today_in_seoul()
    assert materialize(today).success
    before = views(isolated_env, "SELECT * FROM asset_categories WHERE account_id = '87654321-01'")
    real_mode.faults = FaultPlan.parse("87654321-01:business_error")
    result = materialize(today)
    assert not result.success and "87654321-01" in failure(result)[0]
    after = views(isolated_env, "SELECT * FROM asset_categories WHERE account_id = '87654321-01'")
    assert after == before and len(after) == 20


def test_a_row_count_no_layout_has_withholds_only_that_account(
    real_mode: Simulator, isolated_env: Path
) -> None:
    today = today_in_seoul()
    real_mode.faults = FaultPlan.parse("12345678-21:extra_row")
    result = materialize(today)
    assert not result.success
    description, metadata = failure(result)
    for part in ("12345678-21", "18 rows", "'21'", "product21_17", "standard_20"):
        assert part in description
    assert list(metadata["withheld_accounts"]) == ["12345678-21"]
    assert len(RawLanding(isolated_env).all_files(today)) == 3  # the odd answer was kept
    counts = views(
        isolated_env, "SELECT account_id, count(*) FROM asset_categories GROUP BY 1 ORDER BY 1"
    )
    assert counts == [("12345678-01", 20), ("87654321-01", 20)]
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["known_layout"] is False and evaluations["exact_amounts"] is True

    # the layout becomes known (here: the answer is fixed by hand); a rebuild labels the day
    [odd] = RawLanding(isolated_env).day_dir(today).glob("12345678-21/*.json")
    envelope = json.loads(odd.read_text())
    body = json.loads(envelope["pages"][0]["body"])
    del body["output1"][-2]
    envelope["pages"][0]["body"] = json.dumps(body, ensure_ascii=False)
    odd.write_text(json.dumps(envelope, ensure_ascii=False))
    real_mode.faults = FaultPlan.parse("*:business_error")  # no live answer this time
    result = materialize(today)
    counts = views(
        isolated_env, "SELECT account_id, count(*) FROM asset_categories GROUP BY 1 ORDER BY 1"
    )
    assert ("12345678-21", 17) in counts


def test_old_layout_and_summed_foreign_currency_land_with_warnings(
    real_mode: Simulator, isolated_env: Path
) -> None:
    """KIS's own 19-row sample layout, frcr_evlu_tota as the sum of every foreign row, and a
    normal account: all three in the views, exact, and the run succeeds with warnings."""
    today = today_in_seoul()
    real_mode.faults = FaultPlan.parse("12345678-01:row_count,87654321-01:fx_sum")
    result = materialize(today)
    assert result.success, failure(result)
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }
    failed = sorted(key for key, e in evaluations.items() if not e.passed)
    assert failed == [
        ("account_summary", "output2_matches_rows"),
        ("asset_categories", "current_layout"),
    ]
    assert all(evaluations[key].severity.value == "WARN" for key in failed)
    [old] = evaluations[("asset_categories", "current_layout")].metadata["problems"].value
    assert "12345678-01" in old and "standard_19" in old
    [fx] = evaluations[("account_summary", "output2_matches_rows")].metadata["problems"].value
    assert "87654321-01" in fx and "frcr_evlu_tota" in fx

    labels = views(
        isolated_env,
        "SELECT category_ko FROM asset_categories WHERE account_id = '12345678-01' "
        "ORDER BY category_seq",
    )
    assert [label for (label,) in labels] == [c.ko for c in layouts.STANDARD_19.categories]
    landing = RawLanding(isolated_env)
    for path in landing.latest_files(today):
        snap = read_snapshot(path)
        [(total, frcr)] = views(
            isolated_env,
            "SELECT tot_asst_amt::VARCHAR, frcr_evlu_tota::VARCHAR FROM account_summary "
            f"WHERE account_id = '{snap.account.id}'",
        )
        assert Decimal(total) == Decimal(snap.output2["tot_asst_amt"])
        assert Decimal(frcr) == Decimal(snap.output2["frcr_evlu_tota"])
        [(rows, evaluated)] = views(
            isolated_env,
            "SELECT count(*), sum(evlu_amt) FILTER (NOT is_total)::VARCHAR FROM asset_categories "
            f"WHERE account_id = '{snap.account.id}'",
        )
        assert rows == len(snap.output1)
        assert Decimal(evaluated) == sum(Decimal(r["evlu_amt"]) for r in snap.output1[:-1])
    fx_rows = views(
        isolated_env,
        "SELECT sum(evlu_amt)::VARCHAR FROM asset_categories WHERE account_id = '87654321-01' "
        "AND category_code IN ('fx_short_term_bond', 'fx_els_dls', 'foreign_currency')",
    )
    [(frcr,)] = views(
        isolated_env,
        "SELECT frcr_evlu_tota::VARCHAR FROM account_summary WHERE account_id = '87654321-01'",
    )
    assert Decimal(fx_rows[0][0]) == Decimal(frcr) > 0


def test_embedded_simulator_faults_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KIS_SIM_FAULTS", "*:html_error*1,*:rate_limit*1")
    result = materialize(today_in_seoul())
    assert result.success
    raw = result.asset_materializations_for_node("kis_balance_raw")[0].metadata
    events = raw["client_events"].value
    assert events["retries_KisGatewayError"] == 1
    assert events["retries_EGW00201"] == 1
