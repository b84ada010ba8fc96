"""Masking for kis-redact: account numbers replaced by stable fake ones (a keyed hash), and
credentials refused wherever they would appear."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipelines.commands.redact.amounts import NUMBER
from pipelines.errors import RedactionError
from pipelines.kis import protocol
from pipelines.kis.protocol import Account
from pipelines.storage.files import private_dirs

#: Keys that would carry a credential; a landed file never has them, and a copy never will.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "appkey",
        "appsecret",
        "app_key",
        "app_secret",
        "secretkey",
        "access_token",
        "token",
        "personalseckey",
        "approval_key",
    }
)
#: Servers whose name says nothing about the user: KIS's own domains and loopback.
PUBLIC_HOSTS = frozenset({"openapi.koreainvestment.com", protocol.PAPER_TRADING_HOST, "localhost"})
PUBLIC_SERVER_TEXTS = frozenset({"embedded simulator (loopback)"})
SOURCE_KEYS_KEPT = frozenset({"env", "simulated", "as_of"})
REDACTED = "(redacted)"


def default_key_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kis-balance-history" / "redaction-key"


def default_key(path: Path | None = None) -> bytes:
    """This machine's masking key (created on first use, owner-only): the same account gets
    the same fake number in every copy made here, and nobody else can map it back."""
    path = path or default_key_path()
    private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        key = secrets.token_bytes(32)
        handle.write(key)
    return key


def fake_cano(cano: str, key: bytes) -> str:
    """A stable fake 8-digit CANO: a keyed hash of the real one (a plain hash of 10^8 possible
    numbers would be reversed in minutes)."""
    digest = hmac.new(key, cano.encode(), hashlib.sha256).digest()
    for start in range(0, len(digest) - 7, 4):
        fake = f"{int.from_bytes(digest[start : start + 8], 'big') % 10**8:08d}"
        if fake != cano:
            return fake
    raise AssertionError("unreachable: every window of the digest gave the real number")


def _server_is_public(server: Any) -> bool:
    if not isinstance(server, str):
        return False
    if server in PUBLIC_SERVER_TEXTS:
        return True
    url = urlsplit(server if "://" in server else f"//{server}")
    if url.username or url.password or url.path.strip("/") or url.query:
        return False
    host = (url.hostname or "").rstrip(".").lower()
    if host in PUBLIC_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every entry of nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key, item
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", None, item
            yield from _walk(item, f"{path}[{index}]")


def _where_found(envelope: dict[str, Any], text: str) -> str | None:
    """Path of the first string (page bodies looked into) that contains `text`."""
    for path, key, item in _walk(envelope):
        if isinstance(key, str) and text in key:
            return path
        if isinstance(item, str) and text in item:
            if path.endswith(".body"):
                try:
                    inner = _where_found({"body": json.loads(item)}, text)
                except ValueError:
                    inner = None
                return f"{path}{(inner or '').removeprefix('.body')}"
            return path
    return None


def assert_no_secrets(value: Any, where: str, forbidden: Iterable[str]) -> None:
    forbidden = [text for text in forbidden if len(text) >= 8]
    for path, key, item in _walk(value):
        if isinstance(key, str) and key.lower() in SECRET_KEYS:
            raise RedactionError(
                f"{where}{path}: a {key!r} entry; landed files never hold credentials, so this "
                "is not a file the pipeline wrote. Not writing a copy."
            )
        if isinstance(item, str) and (
            "bearer " in item.lower() or any(text in item for text in forbidden)
        ):
            raise RedactionError(
                f"{where}{path}: holds a token or one of your KIS_* secrets. Not writing a copy."
            )


def masked_value(value: Any, masks: dict[str, str]) -> Any:
    """Every string (keys included) with each real CANO replaced by its fake one.

    A number is masked only if it is the account number itself: digits inside an amount are
    left alone (changing them would change the amount), and `redact` refuses such a copy.
    """
    if isinstance(value, str):
        number = value.strip()
        for real, fake in masks.items():
            if not NUMBER.fullmatch(value) or number == real:
                value = value.replace(real, fake)
            elif len(number) == len(real) + 2 and number.startswith(real):
                value = value.replace(real, fake)  # CANO and product code run together
        return value
    if isinstance(value, dict):
        return {masked_value(k, masks): masked_value(v, masks) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_value(item, masks) for item in value]
    return value


def account_masks(envelope: dict[str, Any], key: bytes) -> tuple[Account, dict[str, str]]:
    """The file's account, and each real CANO it names (envelope and request) with its fake."""
    try:
        account = Account.parse(str(envelope.get("account_id", "")))
    except ValueError as error:
        raise RedactionError(f"account_id: {error}") from None
    canos = {account.cano}
    params = envelope.get("request", {}).get("params", {})
    if isinstance(params, dict) and isinstance(params.get("CANO"), str) and params["CANO"]:
        canos.add(params["CANO"])
    masks = {cano: fake_cano(cano, key) for cano in sorted(canos, key=len, reverse=True)}
    return account, masks


def source_copy(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        k: (
            (v if _server_is_public(v) else REDACTED)
            if k == "server"
            else (v if k in SOURCE_KEYS_KEPT else REDACTED)
        )
        for k, v in value.items()
    }


def assert_masked(copy: dict[str, Any], masks: dict[str, str]) -> None:
    for real in masks:
        where = _where_found(copy, real)
        if where:
            raise RedactionError(
                f"the account number still appears in the copy, at {where} (digits of a value, "
                "which masking cannot change); use --amounts to replace the amounts too"
            )
