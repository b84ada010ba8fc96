"""Reaching an S3-compatible store: the AWS_* and KIS_S3_* settings, s3fs filesystems whose every
call has a deadline, and telling a store that does not answer from a damaged or missing file."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines import env_values
from pipelines.errors import StoreSettingError, StoreUnreachableError

if TYPE_CHECKING:
    pass

#: Each call to the object store: seconds to connect, seconds any read may wait, and how many
#: times it is tried (botocore's "standard" retries), so a stalled store fails a call in about
#: attempts x (connect or read timeout) plus backoff, never hangs (KIS_S3_* variables).
DEFAULT_S3_CONNECT_TIMEOUT = 5.0


DEFAULT_S3_READ_TIMEOUT = 30.0


DEFAULT_S3_ATTEMPTS = 3


@dataclass(frozen=True)
class S3Access:
    """How to reach an S3-compatible store: the standard AWS_* variables, secrets not shown,
    and how long a call may wait (KIS_S3_CONNECT_TIMEOUT, KIS_S3_READ_TIMEOUT, KIS_S3_ATTEMPTS)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    connect_timeout: float = DEFAULT_S3_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_S3_READ_TIMEOUT
    attempts: int = DEFAULT_S3_ATTEMPTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> S3Access:
        """AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (unset: AWS itself), AWS_REGION or
        AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (keys
        unset: botocore's usual chain, e.g. a profile or an instance role), and the KIS_S3_*
        limits (StoreSettingError naming the variable if one is not usable)."""
        return cls(
            endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
            access_key_id=environ.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=environ.get("AWS_SESSION_TOKEN") or None,
            connect_timeout=_seconds(environ, "KIS_S3_CONNECT_TIMEOUT", DEFAULT_S3_CONNECT_TIMEOUT),
            read_timeout=_seconds(environ, "KIS_S3_READ_TIMEOUT", DEFAULT_S3_READ_TIMEOUT),
            attempts=_attempts(environ, "KIS_S3_ATTEMPTS", DEFAULT_S3_ATTEMPTS),
        )

    @property
    def limits(self) -> str:
        """The limits in words, for an error saying the store did not answer."""
        return (
            f"connect {self.connect_timeout:g} s, read {self.read_timeout:g} s, "
            f"{self.attempts} attempt(s): KIS_S3_CONNECT_TIMEOUT, KIS_S3_READ_TIMEOUT, "
            "KIS_S3_ATTEMPTS"
        )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    try:
        return env_values.seconds(environ, name, default, maximum=600)
    except env_values.EnvValueError as error:
        raise StoreSettingError(str(error)) from None


def _attempts(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return env_values.count(environ, name, default, maximum=10)
    except env_values.EnvValueError as error:
        raise StoreSettingError(str(error)) from None


#: How long DuckDB's reads may reuse a listing or an object's size and ETag. s3fs checks each
#: range it reads against the ETag, so an object replaced meanwhile fails the query (see
#: `replaced_while_reading`), never mixes two versions; attaching a connection drops them.
READ_LISTINGS_SECONDS = 5.0


@functools.cache
def s3_filesystem(access: S3Access, pid: int, *, for_duckdb: bool = False) -> Any:
    """One s3fs filesystem per access and process (fsspec's are not fork-safe): the pipeline's
    asks the store every time; DuckDB's keeps listings briefly, as it asks for a file's size and
    time several times per query (about 6x fewer requests for the report).

    Every call has connect and read timeouts and bounded retries (botocore's; s3fs's own retry
    loop is set to one try, or it would multiply them)."""
    import aiobotocore.session
    import botocore.handlers

    session = aiobotocore.session.AioSession()
    # botocore sends "Expect: 100-continue" before a PUT's body, and aiohttp waits for the
    # "100 Continue" with no timeout at all: a stalled store would hold every write forever.
    session.unregister("before-call.s3", botocore.handlers.add_expect_header)
    config: dict[str, Any] = {
        "connect_timeout": access.connect_timeout,
        "read_timeout": access.read_timeout,
        # total_max_attempts counts the first try ("max_attempts" here would count retries only)
        "retries": {"total_max_attempts": access.attempts, "mode": "standard"},
    }
    if access.endpoint_url:
        # MinIO, Ceph and most stores behind a custom endpoint want path-style addressing
        config["s3"] = {"addressing_style": "path"}
    filesystem = _answering_filesystem_class()(
        session=session,
        key=access.access_key_id,
        secret=access.secret_access_key,
        token=access.session_token,
        endpoint_url=access.endpoint_url,
        client_kwargs={"region_name": access.region} if access.region else {},
        config_kwargs=config,
        # the pipeline asks the store every time: another worker may have written since
        use_listings_cache=for_duckdb,
        listings_expiry_time=READ_LISTINGS_SECONDS if for_duckdb else None,
        skip_instance_cache=True,
    )
    filesystem.retries = 1
    filesystem.access = access
    return filesystem


def is_unanswered(error: BaseException) -> bool:
    """Whether a call failed because the store did not answer (timeouts, connections), not
    because of what it answered (a missing key, a refused write, ...)."""
    import asyncio

    import botocore.exceptions
    from fsspec.exceptions import FSTimeoutError

    return isinstance(
        error,
        botocore.exceptions.HTTPClientError
        | botocore.exceptions.ConnectionError
        | FSTimeoutError
        | asyncio.TimeoutError,
    )


def unreachable_error(url: str, doing: str, access: S3Access, error: BaseException) -> Exception:
    """The StoreUnreachableError of a call on `url` that the store did not answer."""
    return StoreUnreachableError(
        f"{url}: {doing} failed: the object store ({access.endpoint_url or 'AWS S3'}) did not "
        f"answer within its limits ({access.limits}): {error}"
    )


#: What an S3 call does, in the words of the error saying the store did not answer it.
_DOING = {
    "get_object": "reading",
    "head_object": "looking up",
    "list_objects_v2": "listing",
    "put_object": "writing",
    "delete_object": "removing",
}


@functools.cache
def _answering_filesystem_class() -> type:
    """s3fs's filesystem, where a call the store does not answer (its answer's head or body)
    raises StoreUnreachableError naming the bucket and key. The calls the pipeline makes itself
    are named again by ObjectStorage (`_answered`); this names those made by the readers it
    hands files to, which would otherwise take a timeout for any other error: pyarrow reads a
    Parquet file's pages through it (a botocore timeout is an OSError, as a damaged file's
    error is), and DuckDB passes on only an error's text (`unreachable_while_reading`)."""
    import s3fs

    class AnsweringS3FileSystem(s3fs.S3FileSystem):
        access: S3Access

        async def _call_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
            params = {k: v for part in akwarglist for k, v in part.items()} | kwargs
            key = params.get("Key", params.get("Prefix"))
            url = "s3://" + "/".join(str(p) for p in (params.get("Bucket"), key) if p)
            doing = _DOING.get(method, f"calling {method}")

            def unreachable(error: BaseException) -> Exception:
                return unreachable_error(url, doing, self.access, error)

            try:
                answer = await super()._call_s3(method, *akwarglist, **kwargs)
            except Exception as error:
                if is_unanswered(error):
                    raise unreachable(error) from error
                raise
            if isinstance(answer, dict) and "Body" in answer:
                answer["Body"] = _AnsweringBody(answer["Body"], unreachable)
            return answer

    return AnsweringS3FileSystem


class _AnsweringBody:
    """An answer's body (botocore's StreamingBody) whose reads raise StoreUnreachableError when
    the store stops sending it."""

    def __init__(self, body: Any, unreachable: Callable[[BaseException], Exception]):
        self._body, self._unreachable = body, unreachable

    async def read(self, *args: Any, **kwargs: Any) -> bytes:
        try:
            data: bytes = await self._body.read(*args, **kwargs)
        except Exception as error:
            if is_unanswered(error):
                raise self._unreachable(error) from error
            raise
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


def unreachable_while_reading(error: BaseException) -> StoreUnreachableError | None:
    """The StoreUnreachableError behind a failed query when one of DuckDB's reads of the data
    root was not answered (DuckDB passes on the text of the error its filesystem raised, not
    the error), else None."""
    if isinstance(error, StoreUnreachableError):
        return error
    marker = f"{StoreUnreachableError.__name__}: "
    text = str(error)
    if marker not in text:
        return None
    found = StoreUnreachableError(text.split(marker, 1)[1].strip().splitlines()[0])
    found.__cause__ = error
    return found
