"""Settings: the public KIS_* environment contract, read from the environment and `.env`.

KIS_ENV       sim | real. Unset: real when KIS_APP_KEY is set, else sim.
KIS_BASE_URL  server to call; real default is the KIS domain, sim default the embedded simulator.
KIS_APP_KEY, KIS_APP_SECRET   credentials (required in real mode).
KIS_ACCOUNTS  comma-separated CANO-ACNT_PRDT_CD sharing that key (required in real mode).
KIS_CUSTTYPE  P (default) or B.
KIS_DATA_ROOT where raw JSON, Parquet and the warehouse live (default: data/ in the repo).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from pipelines.kis.client import Credentials
from pipelines.kis.protocol import REAL_BASE_URL, Account

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = REPO_ROOT / ".env"
SIM_CREDENTIALS = Credentials("SIMULATOR-APP-KEY", "SIMULATOR-APP-SECRET")
SIM_ACCOUNTS = (Account("12345678", "01"), Account("12345678", "21"))
ENVS = ("sim", "real")


class SettingsError(ValueError):
    """The KIS_* configuration is incomplete or malformed."""


@dataclass(frozen=True)
class Settings:
    env: str
    base_url: str | None  # None: the embedded simulator
    credentials: Credentials = field(repr=False)
    accounts: tuple[Account, ...]
    custtype: str
    data_root: Path

    @property
    def is_simulated(self) -> bool:
        return self.env == "sim"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: Path | None = None
    ) -> Settings:
        env_file = env_file or ENV_FILE
        values = _merged(environ, env_file)
        app_key, app_secret = values.get("KIS_APP_KEY"), values.get("KIS_APP_SECRET")
        env = values.get("KIS_ENV") or ("real" if app_key else "sim")
        if env not in ENVS:
            raise SettingsError(f"KIS_ENV={env!r}: expected one of {', '.join(ENVS)}")
        accounts = _accounts(values.get("KIS_ACCOUNTS", ""))
        custtype = values.get("KIS_CUSTTYPE") or "P"
        if custtype not in ("P", "B"):
            raise SettingsError(
                f"KIS_CUSTTYPE={custtype!r}: expected P (personal) or B (corporate)"
            )
        if env == "real":
            missing = [
                name
                for name, value in (
                    ("KIS_APP_KEY", app_key),
                    ("KIS_APP_SECRET", app_secret),
                    ("KIS_ACCOUNTS", accounts),
                )
                if not value
            ]
            if missing:
                raise SettingsError(
                    f"KIS_ENV=real needs {', '.join(missing)}; set them in the environment or "
                    f"in {env_file} (or leave KIS_ENV unset to use the simulator)"
                )
        credentials = (
            Credentials(app_key, app_secret) if app_key and app_secret else SIM_CREDENTIALS
        )
        base_url = values.get("KIS_BASE_URL") or (REAL_BASE_URL if env == "real" else None)
        data_root = Path(values.get("KIS_DATA_ROOT") or REPO_ROOT / "data").expanduser()
        return cls(
            env=env,
            base_url=base_url.rstrip("/") if base_url else None,
            credentials=credentials,
            accounts=accounts or SIM_ACCOUNTS,
            custtype=custtype,
            data_root=data_root.resolve(),
        )


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
