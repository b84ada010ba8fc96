"""A data root under a prefix of an S3-compatible bucket (`ObjectStorage`) and where a file is in it
(`ObjectPath`): uploads that are whole or absent, and writes that never replace a key when told
not to (conditional writes)."""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipelines.errors import StoreUnreachableError
from pipelines.storage.base import STAGING, WAREHOUSE_FILE, Fingerprint, Storage
from pipelines.storage.files import (
    LEFTOVER_AGE,
    held,
    locked,
    private_dirs,
    sweep,
)
from pipelines.storage.s3_access import S3Access, is_unanswered, s3_filesystem, unreachable_error

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


class ObjectStorage(Storage):
    """A bucket prefix in any S3-compatible store, through s3fs (botocore).

    Every write is one PUT (or one multipart upload, which S3 shows only once complete), so
    readers never see part of an object; `overwrite=False` is a conditional write
    (`If-None-Match: *`) the store refuses if the key exists. There is no rename and no lock
    on S3: `lock` is an flock on this machine only (see README, "Data in object storage").
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
        return s3_filesystem(self.access, os.getpid())

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
            raise unreachable_error(self.url_of(key), doing, self.access, cause) from cause
        except Exception as error:
            if not is_unanswered(error):
                raise
            raise unreachable_error(self.url_of(key), doing, self.access, error) from error

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
        reader = s3_filesystem(self.access, os.getpid(), for_duckdb=True)
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
