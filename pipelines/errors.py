"""The project's exceptions: one base, `KisBalanceError`, and its families (KIS, data, storage,
settings). Whatever derives from the base says in one line what is wrong and where."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol


class KisBalanceError(Exception):
    """An error this project raises on purpose; its message is the whole explanation.

    The asset layer shows it as one line without a traceback; anything else is a bug and
    keeps its traceback. A class keeps the built-in base (ValueError, RuntimeError, …) that
    callers caught before this hierarchy, so `except ValueError` still works where it did.
    """


# -- the KIS service ------------------------------------------------------------------------


class ReceivedAnswer(Protocol):
    """What a KIS error keeps of the answer that caused it, as quarantine writes it down
    (`pipelines.kis.transport.Answer`)."""

    @property
    def status(self) -> int: ...
    @property
    def body(self) -> bytes: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def complete(self) -> bool: ...
    @property
    def decoding_error(self) -> str: ...
    def kept_headers(self) -> Mapping[str, str]: ...


class KisError(KisBalanceError):
    """Anything that stops a KIS call from giving a usable answer."""

    #: The balance answer that caused it, when one arrived (status, headers, body as received):
    #: what the fetch step keeps in quarantine. Never set for token issuance.
    answer: ReceivedAnswer | None = None


class KisServerError(KisError):
    """The service answered and reported an error (rt_cd != "0"): its msg_cd and msg1 say why.

    The concrete class is `pipelines.kis.protocol.KisApiError`, which also explains a refusal
    of the paper-trading server (모의투자), where this TR is not offered."""


class KisProtocolError(KisError):
    """The answer is not the JSON this TR promises (an HTML error page, a missing key, …)."""


class KisTransientError(KisError):
    """A fault worth retrying: the service or the network, not the request, went wrong."""


class KisRedirectError(KisProtocolError):
    """The server answered 3xx. Never followed: the app key, secret and token would go along."""


class KisTooLargeError(KisProtocolError):
    """The answer's body is over the size limit (KIS_MAX_BODY_BYTES); it was not read further."""


class KisUnreachableError(KisTransientError):
    """No connection could be made to the server (refused, no such host, connect timeout):
    nothing of the request left this machine."""


class KisDeadlineError(KisTransientError):
    """No complete answer within the whole-request deadline (KIS_REQUEST_DEADLINE)."""

    #: Whether the server sent nothing at all (not even complete headers) before the deadline.
    silent: bool = False


class KisGatewayError(KisTransientError, KisProtocolError):
    """A 5xx or 429 whose body is not the service's JSON (a gateway's HTML page, nothing)."""


class KisBudgetError(KisError):
    """An account's time budget (KIS_ACCOUNT_BUDGET) ran out across its requests and retries."""


class NoCachedTokenError(KisError):
    """A client on a read-only token cache (`make doctor --online`) found no usable token: it
    never asks for one, as each issuance sends the account holder a KakaoTalk notice."""

    @classmethod
    def for_key(cls, app_key: str, server: str) -> NoCachedTokenError:
        return cls(
            f"no usable token cached for app key …{app_key[-4:]} at {server}; a read-only "
            "token cache never asks for a new one"
        )


# -- data: what was received, landed or derived ---------------------------------------------


class DataError(KisBalanceError):
    """Data that cannot be used as it is: its layout, amounts, schema, or a damaged file
    (`pipelines.storage.damage.DamagedFileError` and its kinds, which carry the path)."""


class UnknownLayoutError(DataError, ValueError):
    """output1 matches no known layout: labelling it by position would mislabel rows."""


class SchemaError(DataError, ValueError):
    """A table's data whose Arrow schema is not the declared one."""


class SnapshotError(DataError, ValueError):
    """A landed response that cannot be turned into tidy rows; the message says where and why."""


class MissingRawError(DataError, RuntimeError):
    """A past day was asked for, and nothing was landed on it to rebuild it from."""


class MissingDayError(DataError, FileNotFoundError):
    """A day that has no Parquet file for the table (not materialized, or no snapshot)."""


class FutureDayError(DataError, ValueError):
    """A day after today in Asia/Seoul: there is nothing to fetch or build for it yet."""


class RedactionError(DataError, ValueError):
    """The file cannot be redacted safely; nothing is written."""


# -- storage: the data root ------------------------------------------------------------------


class StorageError(KisBalanceError):
    """The data root cannot be used: not a usable root, or its store does not answer."""


class RootError(StorageError, ValueError):
    """A data root that is neither a local path nor an s3:// URL this project can use."""


class StoreUnreachableError(StorageError, RuntimeError):
    """The object store did not answer a call within its timeouts and attempts.

    Not an OSError: nothing is wrong with the file, so nobody may take it for a damaged or
    missing one. The message names the bucket and key (its s3:// URL)."""


class MixedRootError(StorageError, ValueError):
    """The data root holds answers of the other kind (simulated or real), or of both; the
    message says what it holds and how to proceed (pipelines.ingest.provenance)."""


class LandingError(StorageError, RuntimeError):
    """An account's answer was fetched but the data root refused it; says where it was kept."""


# -- settings: KIS_* variables and the files they name ---------------------------------------


class ConfigError(KisBalanceError, ValueError):
    """A setting that cannot be used; the concrete class is `pipelines.settings.SettingsError`
    for the KIS_* configuration as a whole, or one of these for a single value or file."""


class EnvValueError(ConfigError):
    """A variable whose value is not usable; the message names it."""


class StoreSettingError(RootError, ConfigError):
    """A KIS_S3_* variable (timeouts, attempts) that is not a usable value; says which."""


class CaptureSpecError(ConfigError):
    """A KIS_CAPTURE_* or KIS_HISTORY_START value that cannot be read; the message says why."""


class FaultSpecError(ConfigError):
    """A KIS_SIM_FAULTS entry the simulator cannot read; the message names it."""


class TargetsError(ConfigError):
    """The targets file is malformed; the message names the file and the entry."""
