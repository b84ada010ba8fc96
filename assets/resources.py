"""The `kis` resource: where to fetch from and where data lives; unset fields use KIS_* env."""

import os

import dagster as dg
from pydantic import Field

from pipelines.settings import Settings


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

    def settings(self) -> Settings:
        overrides = {
            "KIS_ENV": self.env,
            "KIS_BASE_URL": self.base_url,
            "KIS_ACCOUNTS": self.accounts,
            "KIS_CUSTTYPE": self.custtype,
            "KIS_DATA_ROOT": self.data_root,
            "KIS_WAREHOUSE": self.warehouse,
        }
        environ = {**os.environ, **{k: v for k, v in overrides.items() if v is not None}}
        return Settings.from_env(environ)
