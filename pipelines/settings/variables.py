"""The KIS_* variables through pydantic-settings: the prefix, the sources and their order, and
each variable's validation, the rules between them included; every complaint one line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pipelines import env_values
from pipelines.errors import ConfigError
from pipelines.kis import transport
from pipelines.kis.client import DEFAULT_ACCOUNT_BUDGET
from pipelines.kis.protocol import (
    PAPER_TRADING_ADVICE,
    Account,
    CorporateIdentity,
    is_paper_trading_url,
)
from pipelines.kis.ratelimit import DEFAULT_RATE
from pipelines.simulator.faults import FaultPlan, FaultSpecError

ENVS = ("sim", "real")
CUSTTYPES = {"P": "personal", "B": "corporate"}
DEFAULT_KEYS_IN_FLIGHT = 8
MAX_WAIT_SECONDS = 3600.0
MIN_BODY_BYTES, MAX_BODY_BYTES = 1024, 1 << 30
CORPORATE_VARIABLES = ("KIS_PERSONALSECKEY", "KIS_PHONE_NUMBER", "KIS_IP_ADDR")
#: Numbers env_values reads: field → (its parser, the largest value it takes).
NUMBERS: dict[str, tuple[Any, float]] = {
    "keys_in_flight": (env_values.count, 256),
    "shards": (env_values.count, 256),
    "request_deadline": (env_values.seconds, MAX_WAIT_SECONDS),
    "account_budget": (env_values.seconds, MAX_WAIT_SECONDS),
}


class SettingsError(ConfigError):
    """The KIS_* configuration is incomplete or malformed; the message is one line naming the
    variable, the value (never a secret) and what is accepted."""


#: The variables being read: the process environment, or the mapping a caller gave.
_ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("kis_environ")


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source over the mapping being read (os.environ unless a
    caller, a test or the `kis` resource's overrides, gives another). Names are matched as
    written: `kis_env` is not KIS_ENV."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get(os.environ)
        # pydantic-settings compares lower-cased names: only the exact KIS_ ones get there
        return {name.lower(): value for name, value in environ.items() if name.startswith("KIS_")}


class KisVariables(BaseSettings):
    """The KIS_* variables, each checked on its own as it is read, then the rules between
    them (`_together`). Secrets are SecretStr: never shown, never in a message."""

    model_config = SettingsConfigDict(
        env_prefix="KIS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    env: str = ""
    base_url: str = ""
    app_key: SecretStr = SecretStr("")
    app_secret: SecretStr = SecretStr("")
    accounts: Annotated[tuple[Account, ...], NoDecode] = ()
    accounts_file: str = ""
    custtype: str = "P"
    personalseckey: SecretStr = SecretStr("")
    phone_number: str = ""
    ip_addr: str = ""
    seq_no: str = ""
    mac_address: str = ""
    rate_limit: float = DEFAULT_RATE
    keys_in_flight: int = DEFAULT_KEYS_IN_FLIGHT
    shards: int = 1
    request_deadline: float = transport.DEFAULT_DEADLINE
    account_budget: float = DEFAULT_ACCOUNT_BUDGET
    max_body_bytes: int = transport.DEFAULT_MAX_BODY_BYTES
    sim_faults: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment over the settings files; nothing else (no secrets directory)
        return (init_settings, _EnvironSource(settings_cls), dotenv_settings)

    @field_validator("env")
    @classmethod
    def _env(cls, text: str) -> str:
        if text and text not in ENVS:
            raise SettingsError(f"KIS_ENV={text!r}: expected one of {', '.join(ENVS)}")
        return text

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, text: str) -> str:
        if is_paper_trading_url(text):
            raise SettingsError(
                f"KIS_BASE_URL={text!r} is KIS's paper-trading (모의투자) server. "
                f"{PAPER_TRADING_ADVICE}"
            )
        return text.rstrip("/")

    @field_validator("accounts", mode="before")
    @classmethod
    def _accounts(cls, text: Any) -> tuple[Account, ...]:
        if not isinstance(text, str):
            return tuple(text)
        try:
            accounts = tuple(Account.parse(item) for item in text.split(",") if item.strip())
        except ValueError as error:
            raise SettingsError(f"KIS_ACCOUNTS: {error}") from None
        if len(set(accounts)) != len(accounts):
            raise SettingsError(f"KIS_ACCOUNTS lists an account twice: {text!r}")
        return accounts

    @field_validator("custtype", mode="before")
    @classmethod
    def _custtype(cls, text: str) -> str:
        text = text or "P"
        if text not in CUSTTYPES:
            accepted = " or ".join(f"{code} ({kind})" for code, kind in CUSTTYPES.items())
            raise SettingsError(f"KIS_CUSTTYPE={text!r}: expected {accepted}")
        return text

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate_limit(cls, text: Any) -> float:
        if not isinstance(text, str):
            return float(text)
        if not text:
            return DEFAULT_RATE
        try:
            rate = float(text)
        except ValueError:
            rate = 0.0
        if not 0 < rate <= 1000:
            raise SettingsError(f"KIS_RATE_LIMIT={text!r}: expected requests per second, e.g. 18")
        return rate

    @field_validator(*NUMBERS, mode="before")
    @classmethod
    def _number(cls, text: Any, info: ValidationInfo) -> float:
        field_name = str(info.field_name)
        name, (parse, maximum) = f"KIS_{field_name.upper()}", NUMBERS[field_name]
        default = cls.model_fields[field_name].default
        try:
            return float(parse({name: str(text)}, name, default, maximum=maximum))
        except env_values.EnvValueError as error:
            raise SettingsError(str(error)) from None

    @field_validator("max_body_bytes", mode="before")
    @classmethod
    def _body_bytes(cls, text: Any) -> int:
        text = str(text)
        if not text:
            return transport.DEFAULT_MAX_BODY_BYTES
        if not (text.strip().isdigit() and MIN_BODY_BYTES <= int(text) <= MAX_BODY_BYTES):
            raise SettingsError(
                f"KIS_MAX_BODY_BYTES={text!r}: expected a whole number of bytes from "
                f"{MIN_BODY_BYTES:,} to {MAX_BODY_BYTES:,}, e.g. 1048576 (1 MiB; an answer "
                "is a few KB)"
            )
        return int(text)

    @field_validator("sim_faults")
    @classmethod
    def _sim_faults(cls, text: str) -> str:
        try:
            FaultPlan.parse(text)
        except FaultSpecError as error:
            raise SettingsError(f"KIS_SIM_FAULTS: {error}") from None
        return text

    @model_validator(mode="after")
    def _together(self) -> KisVariables:
        """The rules between variables (real mode's own are in Settings.from_env, as they
        depend on the accounts file)."""
        if self.account_budget < self.request_deadline:
            raise SettingsError(
                f"KIS_ACCOUNT_BUDGET={self.account_budget:g} is less than "
                f"KIS_REQUEST_DEADLINE={self.request_deadline:g}: the budget covers all of an "
                "account's requests and retries, so make it at least one request's deadline "
                "(defaults: 180 and 60 seconds)"
            )
        if self.custtype == "B":
            missing = [
                name
                for name in CORPORATE_VARIABLES
                if not _plain(getattr(self, name.removeprefix("KIS_").lower()))
            ]
            if missing:
                raise SettingsError(f"KIS_CUSTTYPE=B (corporate) needs {', '.join(missing)}")
        return self

    @property
    def mode(self) -> str:
        """sim or real: KIS_ENV, else real when an app key or an accounts file is set."""
        return mode_of(self.env, self.app_key.get_secret_value(), self.accounts_file)

    def corporate(self) -> CorporateIdentity | None:
        if self.custtype != "B":
            return None
        return CorporateIdentity(
            personalseckey=self.personalseckey.get_secret_value(),
            phone_number=self.phone_number,
            ip_addr=self.ip_addr,
            seq_no=self.seq_no or "001",
            mac_address=self.mac_address,
        )


def _plain(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def mode_of(env: str, app_key: str, accounts_file: str) -> str:
    """KIS_ENV as given, or inferred when unset: real when an app key or an accounts file is
    set, else sim."""
    return env or ("real" if app_key or accounts_file else "sim")


def read_variables(environ: Mapping[str, str], files: tuple[Path, ...]) -> KisVariables:
    """The KIS_* variables of `environ` over `files` (a later file over an earlier one), or
    pydantic's first complaint as a one-line SettingsError."""
    token = _ENVIRON.set(environ)
    try:
        return KisVariables(_env_file=files)  # type: ignore[call-arg]
    except ValidationError as error:
        raise _one_line(error) from None
    finally:
        _ENVIRON.reset(token)


def _one_line(error: ValidationError) -> SettingsError:
    """The first complaint, naming the other variables that are wrong too."""
    first, *others = error.errors(include_url=False, include_input=False)
    cause = (first.get("ctx") or {}).get("error")
    line = str(cause) if isinstance(cause, SettingsError) else f"{_name(first)}: {first['msg']}"
    if others:
        line += f" (also wrong: {', '.join(_name(other) for other in others)})"
    return SettingsError(line)


def _name(error: Any) -> str:
    return "KIS_" + "_".join(str(part) for part in error["loc"]).upper()
