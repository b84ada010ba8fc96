"""The `kis` resource: where to fetch from and where data lives; unset fields use KIS_* env."""

import dataclasses
import os

import dagster as dg
from pydantic import Field

from assets.run_launcher import record_worker
from pipelines.settings import Settings, SettingsError


class KisConfig(dg.ConfigurableResource):
    """Non-secret KIS settings. App key and secret come only from the environment (or .env)."""

    env: str | None = Field(default=None, description="sim or real (KIS_ENV)")
    base_url: str | None = Field(default=None, description="server URL (KIS_BASE_URL)")
    accounts: str | None = Field(default=None, description="CANO-ACNT_PRDT_CD list (KIS_ACCOUNTS)")
    custtype: str | None = Field(default=None, description="P or B (KIS_CUSTTYPE)")
    data_root: str | None = Field(
        default=None, description="data directory or s3://bucket/prefix (KIS_DATA_ROOT)"
    )
    warehouse: str | None = Field(
        default=None, description="the local DuckDB warehouse file (KIS_WAREHOUSE)"
    )
    only_accounts: str | None = Field(
        default=None,
        description="fetch only these of the configured accounts (comma-separated "
        "CANO-ACNT_PRDT_CD); the capture sensor sets it to the accounts still missing today",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # run monitoring tells from this when the run's process died (assets/run_launcher.py)
        record_worker(context)

    def settings(self, *, every_account: bool = False) -> Settings:
        """The settings; with `only_accounts` set, only those accounts (unless
        `every_account`)."""
        overrides = {
            "KIS_ENV": self.env,
            "KIS_BASE_URL": self.base_url,
            "KIS_ACCOUNTS": self.accounts,
            "KIS_CUSTTYPE": self.custtype,
            "KIS_DATA_ROOT": self.data_root,
            "KIS_WAREHOUSE": self.warehouse,
        }
        environ = {**os.environ, **{k: v for k, v in overrides.items() if v is not None}}
        settings = Settings.from_env(environ)
        if self.only_accounts is None or every_account:
            return settings
        wanted = {item.strip() for item in self.only_accounts.split(",") if item.strip()}
        configured = {account.id for account in settings.accounts}
        unknown = sorted(wanted - configured)
        if unknown or not wanted:
            raise SettingsError(
                f"only_accounts={self.only_accounts!r}: "
                + (f"{', '.join(unknown)} not among" if unknown else "names none of")
                + f" the configured accounts ({', '.join(sorted(configured))}; KIS_ACCOUNTS "
                "and KIS_ACCOUNTS_FILE)"
            )
        return dataclasses.replace(
            settings, accounts=tuple(a for a in settings.accounts if a.id in wanted)
        )
