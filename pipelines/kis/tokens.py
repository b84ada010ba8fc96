"""TokenCache: one KIS access token per app key and server, kept in an owner-only file.

KIS issues one token per minute per app key and texts the account holder on every issuance,
so a token is reused across runs and processes until shortly before it expires.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pipelines.storage import files

SEOUL = ZoneInfo("Asia/Seoul")


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: datetime  # timezone-aware

    def usable_at(self, now: datetime, margin: timedelta) -> bool:
        return now + margin < self.expires_at

    def __repr__(self) -> str:  # never show the token itself
        return f"Token(expires_at={self.expires_at.isoformat()})"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kis-balance-history" / "tokens"


class TokenCache:
    """File-backed token store keyed by (server, app key); the key itself is only hashed."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        margin: timedelta = timedelta(minutes=10),
        read_only: bool = False,
    ):
        self.directory = directory or default_cache_dir()
        self.margin = margin
        #: A cache only read, never written: a client on it uses what is cached and never asks
        #: for a new token (NoCachedTokenError): `make doctor --online`.
        self.read_only = read_only

    def path_for(self, server: str, app_key: str) -> Path:
        digest = hashlib.sha256(f"{server}\n{app_key}".encode()).hexdigest()[:24]
        return self.directory / f"{digest}.json"

    def _ensure_dir(self) -> None:
        files.private_dirs(self.directory)
        os.chmod(self.directory, 0o700)

    def locked(self, server: str, app_key: str) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock so that concurrent runs issue one token, not two."""
        if self.read_only:  # nothing is issued, so nothing to keep others from
            return contextlib.nullcontext()
        self._ensure_dir()
        return files.locked(self.path_for(server, app_key).with_suffix(".lock"))

    def load(self, server: str, app_key: str, *, now: datetime) -> Token | None:
        token = self.peek(server, app_key)
        return token if token is not None and token.usable_at(now, self.margin) else None

    def peek(self, server: str, app_key: str) -> Token | None:
        """The cached token, expired or not (None if there is none or it cannot be read): what
        `make doctor` shows (its expiry only, never the token)."""
        try:
            data = json.loads(self.path_for(server, app_key).read_text())
            token = Token(str(data["access_token"]), datetime.fromisoformat(data["expires_at"]))
        except (OSError, ValueError, KeyError, TypeError):  # unreadable: issue anew
            return None
        return token if token.expires_at.tzinfo is not None else None  # naive: issue anew

    def save(self, server: str, app_key: str, token: Token) -> None:
        self._ensure_dir()
        path = self.path_for(server, app_key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".token-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(
                    {
                        "access_token": token.access_token,
                        "expires_at": token.expires_at.isoformat(),
                    },
                    handle,
                )
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def discard(self, server: str, app_key: str) -> None:
        if self.read_only:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path_for(server, app_key).unlink()
