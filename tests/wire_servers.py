"""Tiny loopback servers written for the wire tests, independent of the project's simulator:
one that answers each request by a script writing raw bytes to the socket (redirects, trickles,
oversized or mangled bodies), and one that records anything it receives on its port."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipelines.kis import protocol
from pipelines.kis.tokens import SEOUL

#: How long any server thread may live: a test that forgets to stop one still ends.
LIFETIME = 30.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client_port: int  # the client's side of the connection: the same port = a reused connection


class Connection:
    """The server's side of one client connection, for a script to answer on."""

    def __init__(self, sock: socket.socket, stop: threading.Event):
        self.sock, self.stop = sock, stop
        self.reader = sock.makefile("rb")

    def read_request(self) -> Request | None:
        line = self.reader.readline(65536)
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := self.reader.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.reader.read(int(headers.get("content-length") or 0))
        url = urlsplit(target)
        port = self.sock.getpeername()[1]
        return Request(method, url.path, parse_qs(url.query, keep_blank_values=True), headers,
                       body, port)  # fmt: skip

    def send(self, data: bytes) -> bool:
        """Send bytes; False once the client has gone (or the server is stopping)."""
        if self.stop.is_set():
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def trickle(self, data: bytes, every: float) -> bool:
        """Send one byte every `every` seconds; False once the client has gone."""
        for index in range(len(data)):
            if not self.send(data[index : index + 1]) or self.stop.wait(every):
                return False
        return True

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bool:
        return self.send(head(status, body, headers) + body)


def head(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A status line and headers, with the body's Content-Length unless one is given."""
    lines = [f"HTTP/1.1 {status} Status {status}"]
    headers = {"content-length": str(len(body)), **(headers or {})}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Script = Callable[[Request, Connection], bool]
"""Answers one request on the connection; False closes the connection."""


@dataclass
class ScriptedServer:
    """A loopback HTTP/1.1 server (keep-alive) answering each request with `script`."""

    script: Script
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, path: str) -> list[Request]:
        return [request for request in self.requests if request.path == path]

    def _serve(self) -> None:
        ends = time.monotonic() + LIFETIME
        while not self.stop.is_set() and time.monotonic() < ends:
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        connection = Connection(sock, self.stop)
        with sock, contextlib.suppress(OSError, ValueError):
            sock.settimeout(LIFETIME)
            while (request := connection.read_request()) is not None:
                self.requests.append(request)
                if not self.script(request, connection):
                    return

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)


class Recorder:
    """Listens on a loopback port and records every connection and every byte sent to it."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = bytearray()
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with sock, contextlib.suppress(OSError):
                sock.settimeout(0.5)
                while chunk := sock.recv(65536):
                    self.received += chunk

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)


# -- KIS-like answers ------------------------------------------------------------------------
TOKEN = "wire-test-access-token-" + "Tk" * 20


def json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def token_answer(connection: Connection) -> bool:
    expires = datetime.now(SEOUL) + timedelta(hours=24)
    body = json_bytes(
        {
            "access_token": TOKEN,
            "access_token_token_expired": expires.strftime("%Y-%m-%d %H:%M:%S"),
            "token_type": "Bearer",
            "expires_in": 86400,
        }
    )
    return connection.answer(200, body, {"content-type": "application/json; charset=UTF-8"})


def balance_answer(connection: Connection, body: bytes, status: int = 200, **headers: str) -> bool:
    return connection.answer(
        status,
        body,
        {
            "content-type": "application/json; charset=UTF-8",
            "tr_id": protocol.BALANCE_TR_ID,
            "tr_cont": "D",
            **headers,
        },
    )


def kis_like(balance: Callable[[Request, Connection], bool]) -> Script:
    """Tokens issued as KIS does; balance requests answered by `balance`."""

    def script(request: Request, connection: Connection) -> bool:
        if request.method == "POST" and request.path == protocol.TOKEN_PATH:
            return token_answer(connection)
        if request.method == "GET" and request.path == protocol.BALANCE_PATH:
            return balance(request, connection)
        return connection.answer(404, b"not found")

    return script


def account_of(request: Request) -> str:
    return f"{request.query['CANO'][0]}-{request.query['ACNT_PRDT_CD'][0]}"
