"""The data root behind one seam: a local directory, or a prefix in S3-compatible object storage.

Landing, the tables, compaction, the report and the warehouse's view paths read and write the
data root only through `Storage` (`open_root` picks the implementation), so nothing else knows
which one is in use. Keys are '/'-separated paths relative to the root.
"""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipelines import env_values
from pipelines.storage.files import (
    LEFTOVER_AGE,
    atomic_path,
    atomic_paths,
    held,
    locked,
    private_dirs,
    sweep,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

WAREHOUSE_FILE = "warehouse.duckdb"
#: The folder (in a local root, or in an s3:// root's local directory) where files are written
#: before they become their keys; what a killed writer leaves there, `Storage.sweep` removes.
STAGING = ".staging"
#: What changes whenever a file is rewritten: (inode, size, mtime_ns) on a local disk,
#: (ETag, size, last-modified) in object storage.
Fingerprint = tuple[int | str, ...]

#: A scheme or a drive letter and a colon at the start: a URL (or a slip of one), never a local
#: folder (a local folder whose name has a colon is written "./name:with:colon").
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<slashes>/*)")
#: A URL scheme of a store, followed by "//" without its colon: "s3//bucket".
_MISSING_COLON = re.compile(r"^(?P<scheme>s3[an]?|gs|gcs|az|abfss?|r2|https?|file|hdfs)//", re.I)
_S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
#: What a data root may be, as every refusal says.
ACCEPTED_ROOTS = "a local directory (absolute, ~/..., or relative: {base}) or s3://bucket[/prefix]"


class RootError(ValueError):
    """A data root that is neither a local path nor an s3:// URL this project can use."""


class StoreSettingError(RootError):
    """A KIS_S3_* variable (timeouts, attempts) that is not a usable value; says which."""


class StoreUnreachableError(RuntimeError):
    """The object store did not answer a call within its timeouts and attempts.

    Not an OSError: nothing is wrong with the file, so nobody may take it for a damaged or
    missing one. The message names the bucket and key (its s3:// URL)."""


class Storage(ABC):
    """A data root: files under keys, each written whole or not at all."""

    #: The root itself: a local Path, or an ObjectPath (str() gives the s3:// URL).
    root: Location

    @abstractmethod
    def location(self, key: str) -> Location:
        """Where `key` is: a Path under a local root, an ObjectPath in object storage."""

    @abstractmethod
    def absolute(self) -> Storage:
        """The same root with locations whose str() reads from any working directory."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def open_input(self, key: str) -> pa.NativeFile:
        """A seekable reader, e.g. for a Parquet footer without reading the whole file."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> Location:
        """Store `data` under `key` in one step: readers see the previous file or the whole new
        one, never part of either, and a write that fails or is killed leaves the previous one.

        `overwrite=False` never replaces an existing key (FileExistsError instead), also when
        another process writes the same key at the same moment. A local file is readable by its
        owner only (0600, in 0700 folders), the reports too.
        """

    @abstractmethod
    def staged(
        self, key: str, *, overwrite: bool = True
    ) -> contextlib.AbstractContextManager[Path]:
        """A local temporary file to write `key` into; when the block ends without an error it
        becomes `key` in one step, as with `write_bytes`, and otherwise nothing changes."""

    @contextlib.contextmanager
    def staged_many(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        """`staged` for many keys: local temporary files that become their keys when the block
        ends without an error (each whole, as with `write_bytes`); otherwise nothing changes."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.staged(key)) for key in keys]

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def remove(self, key: str) -> None:
        """Remove `key`; a missing key is fine."""

    @abstractmethod
    def files(self, prefix: str, *, named: str | None = None) -> dict[str, Fingerprint]:
        """Every file under `prefix` at any depth (names starting with '.' left out), by key,
        with a fingerprint that changes whenever the file is rewritten or replaced.

        With `named`, only the files of that name one folder below `prefix` (a partitioned
        table's `<partition>/data.parquet`), which a local disk lists much faster."""

    @abstractmethod
    def children(self, prefix: str) -> list[str]:
        """The names directly under `prefix` (files and folders), sorted; none if it is absent."""

    @abstractmethod
    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock for one writer of `name` (see each implementation for its reach)."""

    @abstractmethod
    def sweep(self, *, older_than: timedelta = LEFTOVER_AGE) -> list[str]:
        """Remove what killed writers left behind, once older than any run can live and held by
        no live process; returns what was removed (paths, or the uploads aborted)."""

    @abstractmethod
    def default_warehouse(self) -> Path:
        """Where the DuckDB warehouse file goes when KIS_WAREHOUSE is not set (always local)."""

    def duckdb_path(self, key: str) -> str:
        """`key`, or a glob of keys, as DuckDB reads it once `attach` was called."""
        return str(self.absolute().location(key))

    @property
    def plain_duckdb_reads(self) -> bool:
        """Whether a plain DuckDB (the `duckdb` shell) reads `duckdb_path`s without `attach`."""
        return True

    @abstractmethod
    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let `con` read `duckdb_path`s."""


class LocalStorage(Storage):
    """A directory: temp file + rename for every write, flock locks, 0600 files, 0700 folders."""

    def __init__(self, root: Path):
        self.root: Path = root

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def location(self, key: str) -> Path:
        return self.root / key if key else self.root

    def absolute(self) -> LocalStorage:
        return LocalStorage(self.root.resolve())

    def read_bytes(self, key: str) -> bytes:
        return self.location(key).read_bytes()

    def open_input(self, key: str) -> pa.NativeFile:
        import pyarrow as pa

        return pa.OSFile(str(self.location(key)))

    def write_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> Path:
        with self.staged(key, overwrite=overwrite) as tmp:
            tmp.write_bytes(data)
        return self.location(key)

    @contextlib.contextmanager
    def staged(self, key: str, *, overwrite: bool = True) -> Iterator[Path]:
        staging = self.root / STAGING
        with atomic_path(self.location(key), overwrite=overwrite, staging=staging) as tmp:
            yield tmp

    @contextlib.contextmanager
    def staged_many(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        # a rebuild writes thousands of files: one sync of the disk for all, not two per file
        finals = [self.location(key) for key in keys]
        with atomic_paths(finals, staging=self.root / STAGING) as temps:
            yield temps

    def sweep(self, *, older_than: timedelta = LEFTOVER_AGE) -> list[str]:
        """The temporary files of killed writers in the root's staging folder."""
        return [str(path) for path in sweep(self.root / STAGING, older_than=older_than)]

    def exists(self, key: str) -> bool:
        return self.location(key).exists()

    def remove(self, key: str) -> None:
        self.location(key).unlink(missing_ok=True)

    def files(self, prefix: str, *, named: str | None = None) -> dict[str, Fingerprint]:
        # os.scandir and strings, not pathlib: every run lists years of daily files
        found: dict[str, Fingerprint] = {}
        pending = [prefix.strip("/")]
        while pending:
            directory = pending.pop()
            try:
                with os.scandir(self.root / directory) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        key = f"{directory}/{entry.name}" if directory else entry.name
                        if named is not None:  # one stat per folder, no listing of each
                            if entry.is_dir():
                                self._stat_into(found, f"{key}/{named}")
                        elif entry.is_dir():
                            pending.append(key)
                        else:
                            stat = entry.stat()
                            found[key] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def children(self, prefix: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / prefix.strip("/")))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _stat_into(self, found: dict[str, Fingerprint], key: str) -> None:
        try:
            stat = os.stat(f"{self.root}/{key}")
        except (FileNotFoundError, NotADirectoryError):
            return
        found[key] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """flock on .locks/<name>.lock under the root: every process using this directory."""
        return locked(self.root / ".locks" / f"{name}.lock")

    def default_warehouse(self) -> Path:
        return self.root / WAREHOUSE_FILE

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Nothing to do: DuckDB reads local files itself."""


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
def _filesystem(access: S3Access, pid: int, *, for_duckdb: bool = False) -> Any:
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


def _unanswered(error: BaseException) -> bool:
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


def _unreachable(url: str, doing: str, access: S3Access, error: BaseException) -> Exception:
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
                return _unreachable(url, doing, self.access, error)

            try:
                answer = await super()._call_s3(method, *akwarglist, **kwargs)
            except Exception as error:
                if _unanswered(error):
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
            if _unanswered(error):
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


class ObjectStorage(Storage):
    """A bucket prefix in any S3-compatible store, through s3fs (botocore).

    Every write is one PUT (or one multipart upload, which S3 shows only once complete), so
    readers never see part of an object; `overwrite=False` is a conditional write
    (`If-None-Match: *`) the store refuses if the key exists. There is no rename and no lock
    on S3: `lock` is an flock on this machine only (see docs/object-storage.md).
    """

    def __init__(self, bucket: str, prefix: str, access: S3Access, local_dir: Path):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.access = access
        #: This machine's files for this root: the default warehouse and the lock files.
        self.local_dir = local_dir
        self.root: ObjectPath = ObjectPath(self, "")

    def __repr__(self) -> str:
        return f"ObjectStorage({self.url!r}, {self.access!r})"

    @property
    def url(self) -> str:
        return f"s3://{self._path('')}"

    @property
    def fs(self) -> Any:
        """The s3fs filesystem (also what DuckDB reads through)."""
        return _filesystem(self.access, os.getpid())

    def _path(self, key: str) -> str:
        return "/".join(part for part in (self.bucket, self.prefix, key.strip("/")) if part)

    def location(self, key: str) -> ObjectPath:
        return ObjectPath(self, key.strip("/"))

    def absolute(self) -> ObjectStorage:
        return self

    def subtree(self, key: str) -> ObjectStorage:
        prefix = "/".join(part for part in (self.prefix, key.strip("/")) if part)
        return ObjectStorage(self.bucket, prefix, self.access, self.local_dir / key)

    @contextlib.contextmanager
    def _answered(self, key: str, doing: str) -> Iterator[None]:
        """A call that the store did not answer in time becomes a StoreUnreachableError that
        names the bucket and key (and the limits it was given)."""
        try:
            yield
        except StoreUnreachableError as error:  # named by the filesystem: named here again
            cause = error.__cause__ or error
            raise _unreachable(self.url_of(key), doing, self.access, cause) from cause
        except Exception as error:
            if not _unanswered(error):
                raise
            raise _unreachable(self.url_of(key), doing, self.access, error) from error

    def read_bytes(self, key: str) -> bytes:
        with self._answered(key, "reading"):
            data: bytes = self.fs.cat_file(self._path(key))
        return data

    def open_input(self, key: str) -> pa.NativeFile:
        import pyarrow as pa

        with self._answered(key, "opening"):
            return pa.PythonFile(self.fs.open(self._path(key), "rb"), mode="r")

    def write_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> ObjectPath:
        # one PUT below 100 MB (s3fs), a multipart upload above: all or nothing
        content_type = mimetypes.guess_type(key)[0]  # a report opens as a page from the store
        with self._answered(key, "writing"), self._refused_if_existing(key, overwrite):
            self.fs.pipe_file(
                self._path(key),
                data,
                mode="overwrite" if overwrite else "create",
                **({"ContentType": content_type} if content_type else {}),
            )
        return self.location(key)

    @contextlib.contextmanager
    def staged(self, key: str, *, overwrite: bool = True) -> Iterator[Path]:
        staging = self.local_dir / STAGING
        private_dirs(staging)
        with (
            tempfile.TemporaryDirectory(dir=staging, prefix=".put.", suffix=".tmp") as directory,
            held(Path(directory)),  # held while this writer lives: `sweep` spares it
        ):
            tmp = Path(directory) / PurePosixPath(key).name
            tmp.touch(0o600)
            yield tmp
            with self._answered(key, "writing"), self._refused_if_existing(key, overwrite):
                # the same single PUT (or multipart upload) as write_bytes
                self.fs.put_file(
                    str(tmp), self._path(key), mode="overwrite" if overwrite else "create"
                )

    @contextlib.contextmanager
    def _refused_if_existing(self, key: str, overwrite: bool) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            if not overwrite and _refused_as_existing(error):
                raise FileExistsError(
                    f"{self.url_of(key)} exists and is never replaced (conditional write)"
                ) from error
            raise

    def url_of(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def exists(self, key: str) -> bool:
        # not fs.isfile, which answers False for any error: a stalled store is not "no file"
        try:
            with self._answered(key, "looking up"):
                return bool(self.fs.info(self._path(key))["type"] == "file")
        except FileNotFoundError:
            return False

    def remove(self, key: str) -> None:
        with self._answered(key, "removing"), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def files(self, prefix: str, *, named: str | None = None) -> dict[str, Fingerprint]:
        base, under = self._path(""), prefix.strip("/") + "/" if prefix.strip("/") else ""
        found: dict[str, Fingerprint] = {}
        with self._answered(prefix, "listing"):
            listing = self.fs.find(self._path(prefix), detail=True, withdirs=False)
        for path, info in listing.items():
            key = path[len(base) :].lstrip("/") if base else path
            if info.get("type") != "file" or key.rsplit("/", 1)[-1].startswith("."):
                continue
            if named is not None and key.removeprefix(under).partition("/")[2] != named:
                continue
            modified = info["LastModified"].astimezone(UTC).isoformat()
            found[key] = (str(info.get("ETag", "")).strip('"'), int(info["size"]), modified)
        return found

    def children(self, prefix: str) -> list[str]:
        try:
            with self._answered(prefix, "listing"):
                listed = self.fs.ls(self._path(prefix), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(path.rstrip("/").rsplit("/", 1)[-1] for path in listed)

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """flock in this machine's directory for the root: processes on this machine only.
        Across machines, Dagster's run concurrency keeps one writer per day."""
        return locked(self.local_dir / ".locks" / f"{name}.lock")

    def default_warehouse(self) -> Path:
        return self.local_dir / WAREHOUSE_FILE

    def sweep(self, *, older_than: timedelta = LEFTOVER_AGE) -> list[str]:
        """This machine's staged files of killed writers, and the root's multipart uploads
        started longer than `older_than` ago and never completed (a PUT above 100 MB cut off:
        invisible, but stored and billed until aborted). The store cannot tell whether the
        writer of an upload is alive: its age alone decides."""
        removed = [str(path) for path in sweep(self.local_dir / STAGING, older_than=older_than)]
        cutoff = datetime.now(UTC) - older_than
        prefix = f"{self.prefix}/" if self.prefix else ""
        markers: dict[str, str] = {}
        while True:
            page = self.fs.call_s3(
                "list_multipart_uploads", Bucket=self.bucket, Prefix=prefix, **markers
            )
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    self.fs.call_s3(
                        "abort_multipart_upload",
                        Bucket=self.bucket,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    )
                    key, upload_id = upload["Key"], upload["UploadId"]
                    removed.append(f"s3://{self.bucket}/{key} (upload {upload_id})")
            if not page.get("IsTruncated"):
                return removed
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }

    @property
    def plain_duckdb_reads(self) -> bool:
        return False

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        reader = _filesystem(self.access, os.getpid(), for_duckdb=True)
        reader.invalidate_cache()  # what this process wrote since is seen
        con.register_filesystem(reader)


def replaced_while_reading(error: BaseException) -> bool:
    """Whether a query failed because a file it read was replaced by another writer meanwhile
    (object storage: s3fs's ETag check, FileExpired). Running the query again reads the new
    file whole; on a local root a reader keeps the file it opened, so this never happens."""
    return "FileExpired" in str(error) or type(error).__name__ == "FileExpired"


def _refused_as_existing(error: OSError) -> bool:
    """s3fs's error for a conditional PUT the store refused: 412 (the key exists) or 409 (a
    concurrent conditional write to that key is in flight)."""
    if isinstance(error, FileExistsError):
        return True
    cause = getattr(error.__cause__, "response", None) or {}
    code = str(cause.get("Error", {}).get("Code", ""))
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


@functools.total_ordering
class ObjectPath:
    """A key in object storage, shown as its s3:// URL: the parts of a Path the pipeline uses."""

    __slots__ = ("key", "storage")

    def __init__(self, storage: ObjectStorage, key: str):
        self.storage, self.key = storage, key

    def __str__(self) -> str:
        return self.storage.url_of(self.key)

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(self) == str(other)

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, part: str) -> ObjectPath:
        return ObjectPath(self.storage, f"{self.key}/{part}" if self.key else part)

    @property
    def name(self) -> str:
        return PurePosixPath(self.storage._path(self.key)).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.storage, self.key.rpartition("/")[0])

    def read_bytes(self) -> bytes:
        return self.storage.read_bytes(self.key)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def exists(self) -> bool:
        return self.storage.exists(self.key)

    def open_input(self) -> pa.NativeFile:
        return self.storage.open_input(self.key)


#: Where something is in a data root: a local Path or an ObjectPath.
Location = Path | ObjectPath
#: What a data root is given as (Settings.data_root): the same.
DataRoot = Location


def open_root(root: DataRoot | Storage) -> Storage:
    """The storage of a data root given as a local Path, an ObjectPath or a Storage."""
    if isinstance(root, Storage):
        return root
    if isinstance(root, ObjectPath):
        return root.storage.subtree(root.key) if root.key else root.storage
    return LocalStorage(root)


def open_input(location: Location) -> pa.NativeFile:
    """A seekable reader of one file, local or in object storage."""
    if isinstance(location, ObjectPath):
        return location.open_input()
    import pyarrow as pa

    return pa.OSFile(str(location))


def parse_root(text: str, environ: Mapping[str, str], *, base: Path | None = None) -> DataRoot:
    """KIS_DATA_ROOT as a data root: a local path (`~` expanded; relative to `base`, default the
    working directory; made absolute) or s3://bucket[/prefix] (`S3://` too: schemes are
    case-insensitive) with access from the AWS_* variables in `environ`.

    Anything that looks like a URL or a slip of one (`s3:bucket`, `s3:/bucket`, `s3//bucket`,
    `x:/srv`, `file:///srv`, `gs://…`) is refused, naming the accepted forms: taken as a path,
    it would silently become a local folder of that name."""
    accepted = ACCEPTED_ROOTS.format(
        base=f"under {base}" if base is not None else "under the working directory"
    )

    def refused(reason: str) -> RootError:
        return RootError(f"{reason}; expected {accepted}")

    if text != text.strip():
        raise refused("spaces or a line break at either end")
    url = _SCHEME.match(text)
    if url and url["scheme"].lower() == "s3" and url["slashes"].startswith("//"):
        return _s3_root(text, environ, refused)
    if url:
        scheme, slashes = url["scheme"], url["slashes"]
        if scheme.lower() == "s3":
            raise refused(f"{scheme}:{slashes} needs two slashes (s3://bucket/prefix)")
        if scheme.lower() == "file":
            raise refused(
                f"a {scheme}: URL is not taken: write the path itself ({_file_path(text)})"
            )
        if len(scheme) == 1:
            raise refused(f"{scheme}: is a drive letter, not a path on this machine")
        raise refused(f"{scheme}:{slashes} is a URL this project does not read")
    missing = _MISSING_COLON.match(text)
    if missing:
        raise refused(f"{missing['scheme']}// looks like {missing['scheme']}:// without its colon")
    try:
        path = Path(text).expanduser()
    except RuntimeError as error:  # ~name of no such user, or no home directory at all
        raise refused(f"cannot expand ~ ({error})") from None
    return ((base or Path.cwd()) / path).resolve()


def _file_path(text: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(text).path) or "/"


def _s3_root(
    text: str, environ: Mapping[str, str], refused: Callable[[str], RootError]
) -> ObjectPath:
    s3 = _S3_URL.match("s3" + text[2:])
    if not s3 or "?" in text or "#" in text or "//" in (s3["prefix"] or ""):
        raise refused(
            "not an s3:// URL of a bucket (3-63 lowercase letters, digits, dots and hyphens), "
            "an optional prefix and no query"
        )
    bucket, prefix = s3["bucket"], (s3["prefix"] or "").strip("/")
    data_home = environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    local_dir = Path(data_home, "kis-balance-history", "s3", bucket, *prefix.split("/"))
    return ObjectStorage(bucket, prefix, S3Access.from_env(environ), local_dir).root
