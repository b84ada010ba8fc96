"""Settings: the public KIS_* contract, read once from the process environment and the settings
file (the environment wins), validated, and handed down to the layers below.

Where values come from, the first that sets a variable winning (an empty value counts as set):
1. the process environment (the shell, `make`, a systemd unit's Environment=);
2. the settings file: `kis.env` in the repository, or the file KIS_SETTINGS_FILE names;
3. `.env` in the repository, read for compatibility only: Dagster's CLIs (`dg`, `dagster`,
   dagster-webserver, dagster-daemon) load a `.env` of their working directory over the process
   environment, so a variable set in the shell cannot win over it. Rename it: `mv .env kis.env`.

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
KIS_SIM_FAULTS     faults the embedded simulator injects (see pipelines/simulator/faults.py).
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
KIS_SETTINGS_FILE  the settings file (default: kis.env in the repository); only from the
                   process environment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from pipelines.ingest import capture
from pipelines.ingest.capture import CaptureSettings, CaptureSpecError
from pipelines.kis.client import Credentials
from pipelines.kis.protocol import REAL_BASE_URL, Account, CorporateIdentity
from pipelines.settings.accounts_file import AccountsFileError, read_accounts_file
from pipelines.settings.variables import (
    ENVS,
    SettingsError,
    mode_of,
    read_variables,
)
from pipelines.storage.roots import (
    DataRoot,
    RootError,
    StoreSettingError,
    open_root,
    parse_root,
)

__all__ = ["ENVS", "Settings", "SettingsError", "capture_from_env", "data_root_from_env"]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
#: The settings file (KIS_SETTINGS_FILE names another).
ENV_FILE = REPO_ROOT / "kis.env"
#: Read for compatibility, below ENV_FILE: Dagster's CLIs apply it over the environment.
LEGACY_ENV_FILE = REPO_ROOT / ".env"
SETTINGS_FILE_VARIABLE = "KIS_SETTINGS_FILE"
SIM_CREDENTIALS = Credentials("SIMULATOR-APP-KEY", "SIMULATOR-APP-SECRET")
SIM_ACCOUNTS = (Account("12345678", "01"), Account("12345678", "21"))


@dataclass(frozen=True)
class Settings:
    """The settings of a run, resolved: built by `from_env` only (the defaults are
    KisVariables')."""

    env: str
    base_url: str | None  # None: the embedded simulator
    credentials: Credentials = field(repr=False)
    accounts: tuple[Account, ...]
    custtype: str
    #: A local Path, or an ObjectPath (str() is the s3:// URL) for object storage.
    data_root: DataRoot
    #: Accounts that use their own app key instead of `credentials`.
    account_credentials: Mapping[Account, Credentials] = field(repr=False)
    corporate: CorporateIdentity | None
    rate_limit: float
    #: App keys fetched side by side; each key's accounts go one after another.
    keys_in_flight: int
    #: Runs the capture automation splits a day's fetch into, by app key (1: one run).
    shards: int
    #: Seconds one request may take, connect, headers and body together (KIS_REQUEST_DEADLINE).
    request_deadline: float
    #: Seconds one account may take, all its requests, retries and waits (KIS_ACCOUNT_BUDGET).
    account_budget: float
    #: The largest answer body read; a longer one fails its account (KIS_MAX_BODY_BYTES).
    max_body_bytes: int
    sim_faults: str
    targets_file: Path | None
    capture: CaptureSettings
    #: The DuckDB warehouse file (KIS_WAREHOUSE): always on this machine.
    warehouse: Path

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

    def only(self, account_ids: str, *, option: str = "only_accounts") -> Settings:
        """These settings with only the accounts named (comma-separated CANO-ACNT_PRDT_CD),
        each of which must be configured."""
        wanted = {item.strip() for item in account_ids.split(",") if item.strip()}
        configured = {account.id for account in self.accounts}
        unknown = sorted(wanted - configured)
        if unknown or not wanted:
            raise SettingsError(
                f"{option}={account_ids!r}: "
                + (f"{', '.join(unknown)} not among" if unknown else "names none of")
                + f" the configured accounts ({', '.join(sorted(configured))}; KIS_ACCOUNTS "
                "and KIS_ACCOUNTS_FILE)"
            )
        return dataclasses.replace(self, accounts=tuple(a for a in self.accounts if a.id in wanted))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: Path | None = None
    ) -> Settings:
        """The settings from `environ` (default: the process environment) over the settings
        files (`env_file` alone when given); a SettingsError names what is wrong."""
        environ = os.environ if environ is None else environ
        files = settings_files(environ, env_file)
        values = _merged(environ, files)
        variables = read_variables(environ, files)
        env = variables.mode
        accounts = list(variables.accounts)
        own_keys: dict[Account, Credentials] = {}
        if variables.accounts_file:
            accounts_path = _local_path(values, "KIS_ACCOUNTS_FILE") or Path()
            try:
                listed = read_accounts_file(accounts_path, values)
            except AccountsFileError as error:
                raise SettingsError(str(error)) from None
            for account, credentials in listed.items():
                if account in accounts:
                    raise SettingsError(
                        f"account {account.id} is in both KIS_ACCOUNTS and "
                        f"{variables.accounts_file}"
                    )
                accounts.append(account)
                if credentials:
                    own_keys[account] = credentials
        app_key = variables.app_key.get_secret_value()
        app_secret = variables.app_secret.get_secret_value()
        if env == "real":
            uses_default_key = any(a not in own_keys for a in accounts)
            required: list[tuple[str, object]] = [("KIS_ACCOUNTS or KIS_ACCOUNTS_FILE", accounts)]
            if uses_default_key or not accounts:
                required += [("KIS_APP_KEY", app_key), ("KIS_APP_SECRET", app_secret)]
            missing = [name for name, value in required if not value]
            if missing:
                raise SettingsError(
                    f"KIS_ENV=real needs {', '.join(missing)}; set them in the environment or "
                    f"in {files[-1]} (or leave KIS_ENV unset to use the simulator)"
                )
        data_root = _data_root(values, env)
        return cls(
            env=env,
            base_url=variables.base_url or (REAL_BASE_URL if env == "real" else None),
            credentials=(
                Credentials(app_key, app_secret) if app_key and app_secret else SIM_CREDENTIALS
            ),
            accounts=tuple(accounts) or SIM_ACCOUNTS,
            custtype=variables.custtype,
            data_root=data_root,
            account_credentials=own_keys,
            corporate=variables.corporate(),
            rate_limit=variables.rate_limit,
            keys_in_flight=variables.keys_in_flight,
            shards=variables.shards,
            request_deadline=variables.request_deadline,
            account_budget=variables.account_budget,
            max_body_bytes=variables.max_body_bytes,
            sim_faults=variables.sim_faults,
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
    environ = os.environ if environ is None else environ
    values = _merged(environ, settings_files(environ, env_file))
    mode = mode_of(
        values.get("KIS_ENV", ""),
        values.get("KIS_APP_KEY", ""),
        values.get("KIS_ACCOUNTS_FILE", ""),
    )
    # a KIS_ENV that is neither sim nor real is refused by Settings.from_env: real until then
    return _data_root(values, mode if mode in ENVS else "real")


def default_data_root(env: str) -> Path:
    """The data root when KIS_DATA_ROOT is not set: data/ for real accounts, data/demo/ for the
    simulator, so simulated answers never land beside real ones."""
    return REPO_ROOT / "data" / "demo" if env == "sim" else REPO_ROOT / "data"


def capture_from_env(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> CaptureSettings:
    """The KIS_CAPTURE_* and KIS_HISTORY_START settings alone (what the Dagster definitions'
    partitions and sensor are built from)."""
    environ = os.environ if environ is None else environ
    return _capture(_merged(environ, settings_files(environ, env_file)))


def settings_files(environ: Mapping[str, str], env_file: Path | None = None) -> tuple[Path, ...]:
    """The settings files read, the lowest precedence first: `env_file` alone when given,
    else `.env` (compatibility) and then kis.env or the file KIS_SETTINGS_FILE names."""
    if env_file is not None:
        return (env_file,)
    named = _local_path(environ, SETTINGS_FILE_VARIABLE) or ENV_FILE
    _warn_of_legacy_file(LEGACY_ENV_FILE)
    return (LEGACY_ENV_FILE, named)


def settings_file_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the settings files set (the environment left out)."""
    environ = os.environ if environ is None else environ
    return _merged({}, settings_files(environ))


#: Legacy files this process has warned of: once is enough.
_WARNED: set[Path] = set()


def _warn_of_legacy_file(path: Path) -> None:
    if path in _WARNED or not path.is_file():
        return
    _WARNED.add(path)
    if any(name.startswith("KIS_") for name in dotenv_values(path)):
        log.warning(
            "%s holds KIS_* settings: Dagster's CLIs apply .env over the environment, so a "
            "variable set in the shell cannot win over it; rename it: mv %s %s",
            path,
            path,
            ENV_FILE,
        )


def _merged(environ: Mapping[str, str], files: tuple[Path, ...]) -> dict[str, str]:
    """Every variable (KIS_* and those they name: AWS_*, an accounts file's key variables):
    the process environment over the settings files, a later file over an earlier one."""
    merged: dict[str, str] = {}
    for path in files:
        if path.is_file():
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    return {**merged, **environ}


def _data_root(values: Mapping[str, str], env: str) -> DataRoot:
    """KIS_DATA_ROOT: a local folder (relative: to the repository) or s3://bucket/prefix;
    any other URL, or a slip of one, is refused. Unset: `default_data_root(env)`."""
    text = values.get("KIS_DATA_ROOT") or str(default_data_root(env))
    try:
        return parse_root(text, values, base=REPO_ROOT)
    except StoreSettingError as error:  # names its own variable
        raise SettingsError(str(error)) from None
    except RootError as error:
        raise SettingsError(f"KIS_DATA_ROOT={text!r}: {error}") from None


def _local_path(values: Mapping[str, str], name: str) -> Path | None:
    """A file setting (KIS_WAREHOUSE, KIS_TARGETS_FILE, KIS_ACCOUNTS_FILE, KIS_SETTINGS_FILE):
    `~` expanded, and a relative path taken from the repository, whatever the working
    directory."""
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
