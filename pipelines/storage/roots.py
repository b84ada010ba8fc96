"""The data root behind one seam: a local directory, or a prefix in S3-compatible object storage.

Landing, the tables, compaction, the report and the warehouse's view paths read and write the
data root only through `Storage` (`open_root` picks the implementation), so nothing else knows
which one is in use. Keys are '/'-separated paths relative to the root. `Storage` is declared in
base.py and implemented in local.py and objects.py (s3_access.py reaches the store); this module
reads KIS_DATA_ROOT and opens a root. (StoreSettingError and StoreUnreachableError, now in
pipelines/errors.py, can still be imported from here.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.errors import RootError
from pipelines.errors import StoreSettingError as StoreSettingError
from pipelines.errors import StoreUnreachableError as StoreUnreachableError
from pipelines.storage.base import Storage
from pipelines.storage.local import LocalStorage
from pipelines.storage.objects import ObjectPath, ObjectStorage
from pipelines.storage.s3_access import S3Access

if TYPE_CHECKING:
    import pyarrow as pa


#: A scheme or a drive letter and a colon at the start: a URL (or a slip of one), never a local
#: folder (a local folder whose name has a colon is written "./name:with:colon").
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<slashes>/*)")
#: A URL scheme of a store, followed by "//" without its colon: "s3//bucket".
_MISSING_COLON = re.compile(r"^(?P<scheme>s3[an]?|gs|gcs|az|abfss?|r2|https?|file|hdfs)//", re.I)
_S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
#: What a data root may be, as every refusal says.
ACCEPTED_ROOTS = "a local directory (absolute, ~/..., or relative: {base}) or s3://bucket[/prefix]"


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
