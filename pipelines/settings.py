"""Settings: the public KIS_* environment contract, read from the environment and `.env`.

KIS_ENV            sim | real. Unset: real when KIS_APP_KEY or KIS_ACCOUNTS_FILE is set, else sim.
KIS_BASE_URL       server; real default is the KIS domain, sim default the embedded simulator.
                   The paper-trading server is refused: it does not offer this TR.
KIS_APP_KEY, KIS_APP_SECRET   the default credentials (real mode).
KIS_ACCOUNTS       comma-separated CANO-ACNT_PRDT_CD using the default credentials.
KIS_ACCOUNTS_FILE  TOML file of accounts, each may name the env vars holding its own key.
KIS_CUSTTYPE       P (default) or B; B needs KIS_PERSONALSECKEY, KIS_PHONE_NUMBER, KIS_IP_ADDR
                   (KIS_SEQ_NO defaults to 001, KIS_MAC_ADDRESS is optional).
KIS_RATE_LIMIT     requests per second per app key (default 18; KIS allows 20).
KIS_KEYS_IN_FLIGHT app keys fetched side by side in one run (default 8).
KIS_SHARDS         runs a day's fetch is split into by app key, for several workers (default 1).
KIS_SIM_FAULTS     faults the embedded simulator injects (see pipelines/kis/faults.py).
KIS_REQUEST_DEADLINE  seconds one request may take, connect to last byte (default 60).
KIS_ACCOUNT_BUDGET seconds one account may take, all its requests and retries (default 180).
KIS_MAX_BODY_BYTES the largest answer body read, in bytes (default 1048576, 1 MiB).
KIS_DATA_ROOT      where raw JSON, Parquet and the reports live (default: data/ in the repo in
                   real mode, data/demo/ in simulator mode, so the two never share a root):
                   a local directory, or s3://bucket/prefix in S3-compatible object storage
                   (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION;
                   KIS_S3_CONNECT_TIMEOUT, KIS_S3_READ_TIMEOUT, KIS_S3_ATTEMPTS bound each call).
KIS_WAREHOUSE      the DuckDB warehouse file, always local (default: warehouse.duckdb in a local
                   data root; for s3:// under $XDG_DATA_HOME/kis-balance-history/s3/...).
KIS_TARGETS_FILE   optional TOML of target weights per asset class (allocation_drift view).
KIS_CAPTURE_WINDOW HH:MM-HH:MM in Asia/Seoul when the capture sensor fetches (default 18:30-23:30).
KIS_CAPTURE_EVERY  minutes between the window's attempts (default 20; decimals allowed).
KIS_CAPTURE_DAYS   capture days: names or ranges, e.g. mon-wed,fri (default mon-fri; mon-sun).
KIS_HISTORY_START  YYYY-MM-DD, the first day (partition) of the history; default: the first day
                   with a landed raw answer in the data root, else today.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from pipelines import env_values
from pipelines.errors import ConfigError
from pipelines.ingest import capture
from pipelines.ingest.capture import CaptureSettings, CaptureSpecError
from pipelines.kis import transport
from pipelines.kis.client import DEFAULT_ACCOUNT_BUDGET, Credentials
from pipelines.kis.protocol import (
    PAPER_TRADING_ADVICE,
    REAL_BASE_URL,
    Account,
    CorporateIdentity,
    is_paper_trading_url,
)
from pipelines.kis.ratelimit import DEFAULT_RATE
from pipelines.simulator.faults import FaultPlan, FaultSpecError
from pipelines.storage.roots import (
    DataRoot,
    RootError,
    StoreSettingError,
    open_root,
    parse_root,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = REPO_ROOT / ".env"
SIM_CREDENTIALS = Credentials("SIMULATOR-APP-KEY", "SIMULATOR-APP-SECRET")
SIM_ACCOUNTS = (Account("12345678", "01"), Account("12345678", "21"))
ENVS = ("sim", "real")
ACCOUNT_FILE_KEYS = frozenset({"id", "app_key_env", "app_secret_env"})
DEFAULT_KEYS_IN_FLIGHT = 8
MAX_WAIT_SECONDS = 3600.0
MIN_BODY_BYTES, MAX_BODY_BYTES = 1024, 1 << 30


class SettingsError(ConfigError):
    """The KIS_* configuration is incomplete or malformed."""


@dataclass(frozen=True)
class Settings:
    env: str
    base_url: str | None  # None: the embedded simulator
    credentials: Credentials = field(repr=False)
    accounts: tuple[Account, ...]
    custtype: str
    #: A local Path, or an ObjectPath (str() is the s3:// URL) for object storage.
    data_root: DataRoot
    #: Accounts that use their own app key instead of `credentials`.
    account_credentials: Mapping[Account, Credentials] = field(default_factory=dict, repr=False)
    corporate: CorporateIdentity | None = None
    rate_limit: float = DEFAULT_RATE
    #: App keys fetched side by side; each key's accounts go one after another.
    keys_in_flight: int = DEFAULT_KEYS_IN_FLIGHT
    #: Runs the capture automation splits a day's fetch into, by app key (1: one run).
    shards: int = 1
    #: Seconds one request may take, connect, headers and body together (KIS_REQUEST_DEADLINE).
    request_deadline: float = transport.DEFAULT_DEADLINE
    #: Seconds one account may take, all its requests, retries and waits (KIS_ACCOUNT_BUDGET).
    account_budget: float = DEFAULT_ACCOUNT_BUDGET
    #: The largest answer body read; a longer one fails its account (KIS_MAX_BODY_BYTES).
    max_body_bytes: int = transport.DEFAULT_MAX_BODY_BYTES
    sim_faults: str = ""
    targets_file: Path | None = None
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    #: The DuckDB warehouse file (KIS_WAREHOUSE): always on this machine.
    warehouse: Path = field(default_factory=Path)

    def __post_init__(self) -> None:
        if self.warehouse == Path():
            object.__setattr__(self, "warehouse", open_root(self.data_root).default_warehouse())

    @property
    def is_simulated(self) -> bool:
        return self.env == "sim"

    def key_groups(self) -> list[tuple[Credentials, tuple[Account, ...]]]:
        """Accounts grouped by the app key that fetches them, in configuration order."""
        groups: dict[str, tuple[Credentials, list[Account]]] = {}
        for account in self.accounts:
            credentials = self.account_credentials.get(account, self.credentials)
            groups.setdefault(credentials.app_key, (credentials, []))[1].append(account)
        return [(credentials, tuple(accounts)) for credentials, accounts in groups.values()]

    def shards_by_account(self) -> dict[Account, int]:
        """Each account's shard: its app key's place in configuration order, modulo `shards`,
        so every account of one key is fetched by the same run."""
        return {
            account: number % self.shards
            for number, (_, accounts) in enumerate(self.key_groups())
            for account in accounts
        }

    def in_shard(self, index: int) -> Settings:
        """These settings with only the accounts of one shard."""
        if not 0 <= index < self.shards:
            raise SettingsError(
                f"shard {index}: KIS_SHARDS={self.shards} has shards 0 to {self.shards - 1}"
            )
        shards = self.shards_by_account()
        return dataclasses.replace(
            self, accounts=tuple(a for a in self.accounts if shards[a] == index)
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: Path | None = None
    ) -> Settings:
        env_file = env_file or ENV_FILE
        values = _merged(environ, env_file)
        app_key, app_secret = values.get("KIS_APP_KEY"), values.get("KIS_APP_SECRET")
        accounts_file = values.get("KIS_ACCOUNTS_FILE")
        env = _env(values)
        if is_paper_trading_url(values.get("KIS_BASE_URL") or ""):
            raise SettingsError(
                f"KIS_BASE_URL={values['KIS_BASE_URL']!r} is KIS's paper-trading (모의투자) "
                f"server. {PAPER_TRADING_ADVICE}"
            )
        accounts = list(_accounts(values.get("KIS_ACCOUNTS", "")))
        own_keys: dict[Account, Credentials] = {}
        if accounts_file:
            accounts_path = _local_path(values, "KIS_ACCOUNTS_FILE") or Path()
            for account, credentials in _accounts_file(accounts_path, values).items():
                if account in accounts:
                    raise SettingsError(
                        f"account {account.id} is in both KIS_ACCOUNTS and {accounts_file}"
                    )
                accounts.append(account)
                if credentials:
                    own_keys[account] = credentials
        custtype = values.get("KIS_CUSTTYPE") or "P"
        if custtype not in ("P", "B"):
            raise SettingsError(
                f"KIS_CUSTTYPE={custtype!r}: expected P (personal) or B (corporate)"
            )
        if env == "real":
            uses_default_key = any(a not in own_keys for a in accounts)
            required: list[tuple[str, object]] = [("KIS_ACCOUNTS or KIS_ACCOUNTS_FILE", accounts)]
            if uses_default_key or not accounts:
                required += [("KIS_APP_KEY", app_key), ("KIS_APP_SECRET", app_secret)]
            missing = [name for name, value in required if not value]
            if missing:
                raise SettingsError(
                    f"KIS_ENV=real needs {', '.join(missing)}; set them in the environment or "
                    f"in {env_file} (or leave KIS_ENV unset to use the simulator)"
                )
        credentials = (
            Credentials(app_key, app_secret) if app_key and app_secret else SIM_CREDENTIALS
        )
        base_url = values.get("KIS_BASE_URL") or (REAL_BASE_URL if env == "real" else None)
        data_root = _data_root(values)
        sim_faults = values.get("KIS_SIM_FAULTS", "")
        request_deadline, account_budget = _waits(values)
        try:
            FaultPlan.parse(sim_faults)
        except FaultSpecError as error:
            raise SettingsError(f"KIS_SIM_FAULTS: {error}") from None
        return cls(
            env=env,
            base_url=base_url.rstrip("/") if base_url else None,
            credentials=credentials,
            accounts=tuple(accounts) or SIM_ACCOUNTS,
            custtype=custtype,
            data_root=data_root,
            account_credentials=own_keys,
            corporate=_corporate(values) if custtype == "B" else None,
            rate_limit=_rate_limit(values.get("KIS_RATE_LIMIT")),
            keys_in_flight=_count("KIS_KEYS_IN_FLIGHT", values, DEFAULT_KEYS_IN_FLIGHT),
            shards=_count("KIS_SHARDS", values, 1),
            request_deadline=request_deadline,
            account_budget=account_budget,
            max_body_bytes=_body_bytes(values.get("KIS_MAX_BODY_BYTES")),
            sim_faults=sim_faults,
            targets_file=_local_path(values, "KIS_TARGETS_FILE"),
            capture=_capture(values),
            warehouse=(
                _local_path(values, "KIS_WAREHOUSE") or open_root(data_root).default_warehouse()
            ),
        )


def data_root_from_env(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> DataRoot:
    """KIS_DATA_ROOT alone (its default by KIS_ENV), without the checks the rest of the
    settings need."""
    return _data_root(_merged(environ, env_file or ENV_FILE))


def default_data_root(env: str) -> Path:
    """The data root when KIS_DATA_ROOT is not set: data/ for real accounts, data/demo/ for the
    simulator, so simulated answers never land beside real ones."""
    return REPO_ROOT / "data" / "demo" if env == "sim" else REPO_ROOT / "data"


def _env(values: Mapping[str, str], *, checked: bool = True) -> str:
    """KIS_ENV; unset: real when KIS_APP_KEY or KIS_ACCOUNTS_FILE is set, else sim. A value
    that is neither is refused (`checked`), or else taken as real."""
    inferred = "real" if values.get("KIS_APP_KEY") or values.get("KIS_ACCOUNTS_FILE") else "sim"
    env = values.get("KIS_ENV") or inferred
    if env not in ENVS and not checked:
        return "real"
    if env not in ENVS:
        raise SettingsError(f"KIS_ENV={env!r}: expected one of {', '.join(ENVS)}")
    return env


def capture_from_env(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> CaptureSettings:
    """The KIS_CAPTURE_* and KIS_HISTORY_START settings alone (what the Dagster definitions
    are built from at import, even when the rest of the configuration is incomplete)."""
    return _capture(_merged(environ, env_file or ENV_FILE))


def _data_root(values: Mapping[str, str]) -> DataRoot:
    """KIS_DATA_ROOT: a local folder (relative: to the repository) or s3://bucket/prefix;
    any other URL, or a slip of one, is refused."""
    text = values.get("KIS_DATA_ROOT") or str(default_data_root(_env(values, checked=False)))
    try:
        return parse_root(text, values, base=REPO_ROOT)
    except StoreSettingError as error:  # names its own variable
        raise SettingsError(str(error)) from None
    except RootError as error:
        raise SettingsError(f"KIS_DATA_ROOT={text!r}: {error}") from None


def _local_path(values: Mapping[str, str], name: str) -> Path | None:
    """A file setting (KIS_WAREHOUSE, KIS_TARGETS_FILE, KIS_ACCOUNTS_FILE): `~` expanded, and a
    relative path taken from the repository, where `.env` is, whatever the working directory."""
    text = values.get(name)
    if not text:
        return None
    try:
        return (REPO_ROOT / Path(text).expanduser()).resolve()
    except RuntimeError as error:  # ~name of no such user
        raise SettingsError(f"{name}={text!r}: cannot expand ~ ({error})") from None


CAPTURE_PARSERS = {
    "KIS_CAPTURE_WINDOW": ("window", capture.parse_window),
    "KIS_CAPTURE_EVERY": ("every", capture.parse_every),
    "KIS_CAPTURE_DAYS": ("days", capture.parse_days),
    "KIS_HISTORY_START": ("history_start", capture.parse_history_start),
}


def _capture(values: Mapping[str, str]) -> CaptureSettings:
    fields: dict[str, Any] = {}
    for name, (attribute, parse) in CAPTURE_PARSERS.items():
        text = values.get(name)
        if not text:
            continue
        try:
            fields[attribute] = parse(text)
        except CaptureSpecError as error:
            raise SettingsError(f"{name}={error}") from None
    return CaptureSettings(**fields)


def _merged(environ: Mapping[str, str] | None, env_file: Path) -> dict[str, str]:
    """The process environment over the `.env` file: a variable that is set always wins."""
    from_file = (
        {k: v for k, v in dotenv_values(env_file).items() if v is not None}
        if env_file.is_file()
        else {}
    )
    return {**from_file, **(os.environ if environ is None else environ)}


def _accounts(text: str) -> tuple[Account, ...]:
    try:
        accounts = tuple(Account.parse(item) for item in text.split(",") if item.strip())
    except ValueError as error:
        raise SettingsError(f"KIS_ACCOUNTS: {error}") from None
    if len(set(accounts)) != len(accounts):
        raise SettingsError(f"KIS_ACCOUNTS lists an account twice: {text!r}")
    return accounts


def _accounts_file(path: Path, values: Mapping[str, str]) -> dict[Account, Credentials | None]:
    """Accounts from the TOML file; keys are named by env var, never written in the file."""
    try:
        entries = tomllib.loads(path.read_text()).get("account", [])
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"KIS_ACCOUNTS_FILE {path}: {error}") from None
    accounts: dict[Account, Credentials | None] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"KIS_ACCOUNTS_FILE {path}, [[account]] #{number}"
        unknown = set(entry) - ACCOUNT_FILE_KEYS
        if unknown:
            raise SettingsError(
                f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(ACCOUNT_FILE_KEYS)}. "
                "Secrets never go in this file: name the variables that hold them with "
                "app_key_env and app_secret_env."
            )
        try:
            account = Account.parse(str(entry.get("id", "")))
        except ValueError as error:
            raise SettingsError(f"{where}: {error}") from None
        if account in accounts:
            raise SettingsError(f"{where}: account {account.id} is listed twice")
        key_env, secret_env = entry.get("app_key_env"), entry.get("app_secret_env")
        if bool(key_env) != bool(secret_env):
            raise SettingsError(f"{where}: give both app_key_env and app_secret_env, or neither")
        credentials = None
        if key_env and secret_env:
            key, secret = values.get(key_env), values.get(secret_env)
            unset = [name for name, value in ((key_env, key), (secret_env, secret)) if not value]
            if unset:
                raise SettingsError(
                    f"{where} (account {account.id}): {', '.join(unset)} not set in the "
                    "environment or .env"
                )
            credentials = Credentials(str(key), str(secret))
        accounts[account] = credentials
    return accounts


def _corporate(values: Mapping[str, str]) -> CorporateIdentity:
    names = ("KIS_PERSONALSECKEY", "KIS_PHONE_NUMBER", "KIS_IP_ADDR")
    missing = [name for name in names if not values.get(name)]
    if missing:
        raise SettingsError(f"KIS_CUSTTYPE=B (corporate) needs {', '.join(missing)}")
    return CorporateIdentity(
        personalseckey=values["KIS_PERSONALSECKEY"],
        phone_number=values["KIS_PHONE_NUMBER"],
        ip_addr=values["KIS_IP_ADDR"],
        seq_no=values.get("KIS_SEQ_NO") or "001",
        mac_address=values.get("KIS_MAC_ADDRESS", ""),
    )


def _rate_limit(text: str | None) -> float:
    if not text:
        return DEFAULT_RATE
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not 0 < rate <= 1000:
        raise SettingsError(f"KIS_RATE_LIMIT={text!r}: expected requests per second, e.g. 18")
    return rate


def _count(name: str, values: Mapping[str, str], default: int) -> int:
    """A whole number from 1 to 256 (app keys at once, shards)."""
    try:
        return env_values.count(values, name, default, maximum=256)
    except env_values.EnvValueError as error:
        raise SettingsError(str(error)) from None


def _seconds(name: str, values: Mapping[str, str], default: float) -> float:
    try:
        return env_values.seconds(values, name, default, maximum=MAX_WAIT_SECONDS)
    except env_values.EnvValueError as error:
        raise SettingsError(str(error)) from None


def _waits(values: Mapping[str, str]) -> tuple[float, float]:
    """KIS_REQUEST_DEADLINE and KIS_ACCOUNT_BUDGET; the budget covers at least one request."""
    deadline = _seconds("KIS_REQUEST_DEADLINE", values, transport.DEFAULT_DEADLINE)
    budget = _seconds("KIS_ACCOUNT_BUDGET", values, DEFAULT_ACCOUNT_BUDGET)
    if budget < deadline:
        raise SettingsError(
            f"KIS_ACCOUNT_BUDGET={budget:g} is less than KIS_REQUEST_DEADLINE={deadline:g}: the "
            "budget covers all of an account's requests and retries, so make it at least one "
            "request's deadline (defaults: 180 and 60 seconds)"
        )
    return deadline, budget


def _body_bytes(text: str | None) -> int:
    if not text:
        return transport.DEFAULT_MAX_BODY_BYTES
    if not (text.strip().isdigit() and MIN_BODY_BYTES <= int(text) <= MAX_BODY_BYTES):
        raise SettingsError(
            f"KIS_MAX_BODY_BYTES={text!r}: expected a whole number of bytes from "
            f"{MIN_BODY_BYTES:,} to {MAX_BODY_BYTES:,}, e.g. 1048576 (1 MiB; an answer is a few KB)"
        )
    return int(text)
