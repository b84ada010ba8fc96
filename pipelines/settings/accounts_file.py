"""KIS_ACCOUNTS_FILE: the TOML file of accounts, each may name the variables holding its own
app key; the secrets themselves never go in the file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.kis.client import Credentials
from pipelines.kis.protocol import Account

ACCOUNT_FILE_KEYS = frozenset({"id", "app_key_env", "app_secret_env"})


class AccountsFileError(ConfigError):
    """The accounts file cannot be read or says something it may not; the message names the
    file and the entry."""


def read_accounts_file(path: Path, values: Mapping[str, str]) -> dict[Account, Credentials | None]:
    """Accounts from the TOML file, each with its own credentials (from the variables in
    `values` the entry names) or None for the default app key."""
    try:
        entries = tomllib.loads(path.read_text()).get("account", [])
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise AccountsFileError(f"KIS_ACCOUNTS_FILE {path}: {error}") from None
    accounts: dict[Account, Credentials | None] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"KIS_ACCOUNTS_FILE {path}, [[account]] #{number}"
        unknown = set(entry) - ACCOUNT_FILE_KEYS
        if unknown:
            raise AccountsFileError(
                f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(ACCOUNT_FILE_KEYS)}. "
                "Secrets never go in this file: name the variables that hold them with "
                "app_key_env and app_secret_env."
            )
        try:
            account = Account.parse(str(entry.get("id", "")))
        except ValueError as error:
            raise AccountsFileError(f"{where}: {error}") from None
        if account in accounts:
            raise AccountsFileError(f"{where}: account {account.id} is listed twice")
        accounts[account] = _credentials(where, account, entry, values)
    return accounts


def _credentials(
    where: str, account: Account, entry: Mapping[str, object], values: Mapping[str, str]
) -> Credentials | None:
    key_env, secret_env = entry.get("app_key_env"), entry.get("app_secret_env")
    if bool(key_env) != bool(secret_env):
        raise AccountsFileError(f"{where}: give both app_key_env and app_secret_env, or neither")
    if not (key_env and secret_env):
        return None
    key, secret = values.get(str(key_env)), values.get(str(secret_env))
    unset = [str(name) for name, value in ((key_env, key), (secret_env, secret)) if not value]
    if unset:
        raise AccountsFileError(
            f"{where} (account {account.id}): {', '.join(unset)} not set in the environment "
            "or the settings file"
        )
    return Credentials(str(key), str(secret))
