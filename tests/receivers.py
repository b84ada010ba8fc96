"""Real receivers on loopback for the notification tests: an SMTP server (aiosmtpd) for
Apprise's mailto://, and an HTTP server that keeps every JSON POST (Apprise's json://) and every
GET (the healthcheck ping)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    at: float
    path: str
    title: str
    body: str


@dataclass
class Inbox:
    """What a receiver got, in order, with the time (time.time()) it arrived."""

    items: list[Received] = field(default_factory=list)
    pings: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: Received, *, ping: bool = False) -> None:
        with self.lock:
            (self.pings if ping else self.items).append(item)

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.items)

    def get_pings(self) -> list[Received]:
        with self.lock:
            return list(self.pings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_receiver() -> Iterator[tuple[str, Inbox]]:
    """http://127.0.0.1:PORT, keeping JSON POSTs (title, message) and GETs (pings)."""
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
            inbox.add(
                Received(time.time(), self.path, str(data.get("title")), str(data.get("message")))
            )
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            inbox.add(Received(time.time(), self.path, "", ""), ping=True)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", inbox
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def smtp_receiver() -> Iterator[tuple[str, Inbox]]:
    """An SMTP server on loopback: yields the mailto:// URL that sends to it, and its inbox."""
    inbox = Inbox()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mail = message_from_bytes(envelope.content, policy=policy.default)
            part = mail.get_body(preferencelist=("plain", "html"))
            text = part.get_content() if part is not None else ""
            inbox.add(
                Received(time.time(), ",".join(envelope.rcpt_tos), str(mail["subject"]), text)
            )
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield (
            f"mailto://127.0.0.1:{port}?mode=insecure&from=kis@localhost&to=me@localhost",
            inbox,
        )
    finally:
        controller.stop()
