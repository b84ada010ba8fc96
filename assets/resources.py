"""The `kis` resource: the run's settings, resolved once when the run starts, and the server
it fetches from (KIS, or the embedded simulator, which this resource decides to start)."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg
from pydantic import Field, PrivateAttr

from assets.run_launcher import record_worker
from pipelines.ingest.fetch import EMBEDDED_SERVER_ID, LandingReport, Server, fetch_and_land
from pipelines.ingest.landing import RawLanding
from pipelines.settings import Settings
from pipelines.simulator import server as simulator


def kis_server(settings: Settings) -> Server:
    """The server to fetch from: KIS_BASE_URL, or the process's embedded simulator (started
    here on first use, with KIS_SIM_FAULTS) when it is unset in simulator mode."""
    if settings.base_url is not None:
        return Server(settings.base_url, settings.base_url)
    return Server(simulator.embedded(settings.sim_faults).base_url, EMBEDDED_SERVER_ID)


class KisResource(dg.ConfigurableResource):
    """KIS: the settings (KIS_* from the environment over kis.env; a field set here wins) and
    the clients of the server. App key and secret come only from the environment or kis.env."""

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

    _configured: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # run monitoring tells from this when the run's process died (assets/run_launcher.py)
        record_worker(context)
        # once per run: a SettingsError fails the run's first step with its one line
        self._configured = self.resolve()

    def resolve(self) -> Settings:
        """Every configured account's settings, read now: the KIS_* variables with this
        resource's fields over them."""
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

    def settings(self, *, every_account: bool = False) -> Settings:
        """The run's settings; with `only_accounts` set, only those accounts (unless
        `every_account`)."""
        if self._configured is None:  # used outside a run (a test, a script)
            self._configured = self.resolve()
        if self.only_accounts is None or every_account:
            return self._configured
        return self._configured.only(self.only_accounts)

    def server(self) -> Server:
        """The server this run fetches from (the embedded simulator started if it is that)."""
        return kis_server(self.settings())

    def fetch_and_land(
        self, landing: RawLanding, day: date, *, sim_as_of: date | None = None
    ) -> LandingReport:
        """Fetch the run's accounts from its server and land each answer (see
        pipelines.ingest.fetch.fetch_and_land)."""
        settings = self.settings()
        return fetch_and_land(settings, landing, day, sim_as_of=sim_as_of, server=self.server())
