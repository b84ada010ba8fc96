"""The whole-request deadline of `transport.send`: a watchdog thread shuts a late request's sockets
down, whatever it is waiting for (connect, TLS, headers or body)."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected (yet, or any more): nothing waits on it
        sock.shutdown(socket.SHUT_RDWR)


class Watch:
    """The sockets of one request; shut down if the deadline passes before `finish`.

    Each socket is watched through a duplicate of its descriptor (shutdown(2) acts on the
    connection, whatever descriptor names it), so a TLS socket is cut as well, and the watch
    never touches the pool's own socket objects."""

    def __init__(self) -> None:
        self.expired = False
        self._finished = False
        self._lock = threading.Lock()
        self._watched: list[tuple[HTTPConnection, socket.socket]] = []

    def add(self, connection: HTTPConnection, sock: socket.socket) -> None:
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            if self._finished:
                duplicate.close()
                return
            self._watched.append((connection, duplicate))
            if self.expired:
                _shut_down(duplicate)

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return  # the request ended in time: its connection may be in use again
            self.expired = True
            for _, duplicate in self._watched:
                _shut_down(duplicate)

    def finish(self) -> None:
        """The request is over: nothing is shut down from now on; after a deadline, the
        request's connections are closed so the pool never hands one out again."""
        with self._lock:
            self._finished = True
            watched, self._watched = self._watched, []
        for connection, duplicate in watched:
            duplicate.close()
            if self.expired:
                connection.close()


class _Watchdog:
    """One thread per process that expires watches when their deadlines pass."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._due: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="kis-request-deadlines", daemon=True).start()

    def watch(self, at: float, watch: Watch) -> None:
        with self._changed:
            heapq.heappush(self._due, (at, next(self._order), watch))
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(wait)
                _, _, watch = heapq.heappop(self._due)
            watch.expire()


_watchdog: _Watchdog | None = None


_watchdog_lock = threading.Lock()


_current = threading.local()


def _forget_watchdog() -> None:
    global _watchdog, _watchdog_lock
    _watchdog, _watchdog_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_watchdog)  # a forked child starts its own thread


def _the_watchdog() -> _Watchdog:
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None or _watchdog.pid != os.getpid():
            _watchdog = _Watchdog()
        return _watchdog


def _watch_socket(connection: HTTPConnection, sock: socket.socket) -> None:
    watch: Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(connection, sock)


class _WatchedHTTPConnection(HTTPConnection):
    """Puts every socket it uses under the deadline of the request being sent."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # before TLS: the handshake is under the deadline too
        _watch_socket(self, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection, now serving this request
            _watch_socket(self, self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedTLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedTLSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections that honour `send`'s deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = WATCHED_POOLS
        return manager


def prepare(session: requests.Session) -> None:
    """Mount the watched adapter on `session`; `send` needs it to keep its deadline."""
    for prefix in ("http://", "https://"):
        if not isinstance(session.adapters.get(prefix), WatchedAdapter):
            session.mount(prefix, WatchedAdapter())


def start(seconds: float) -> Watch:
    """Put the sockets this thread opens or reuses from now on under a deadline `seconds` away
    (on a session `prepare`d); `stop` ends it."""
    watch = Watch()
    _the_watchdog().watch(time.monotonic() + seconds, watch)
    _current.watch = watch
    return watch


def stop(watch: Watch) -> None:
    """The request is over (see `Watch.finish`); this thread's sockets are watched no more."""
    _current.watch = None
    watch.finish()
