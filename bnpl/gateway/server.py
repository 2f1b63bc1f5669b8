"""A lean HTTP server for the sandbox provider: the Django views' endpoints without Django's request cycle.

``manage.py serve_sandbox_gateway --bind 127.0.0.1:8100`` serves ``POST /sandbox/gateway/<endpoint>``
(charge, refund, payout, query) with the same processing and faults as the views in the web app
(``bnpl.gateway.endpoint``): ``HttpSandboxGateway`` cannot tell the two apart. It exists because a
payment provider serves many more requests per second than a Django request cycle (middleware,
sessions, URL resolution: several ms of CPU per request) allows on the platform's own machine, and
a charge-run benchmark against a provider slower than the run measures the provider.

One asyncio event loop per process holds the connections (HTTP/1.1 keep-alive) and waits the
configured latency without occupying a thread; the database work (the faults row, the provider's
transaction) runs on a small thread pool, each thread with its own persistent Django connection. A request
waits the latency the faults had at the process's previous request, then one call on the pool reads the
faults and processes it; only when the latency was raised meanwhile does it wait the difference and call
again. Either way a request is processed after at least the latency configured when it is processed (a
lowered latency applies from the next request), and the faults row is read once per request, not twice as
often as the provider's transaction runs.
Several processes (``--processes``) share one listening socket. Like the views, it refuses to run
unless ``BNPL_SANDBOX_HTTP_ENABLED`` is true: it moves simulated money and takes no credentials.

Deliberately small HTTP/1.1: ``Content-Length`` bodies only (no chunked requests), no TLS, no
pipelining beyond answering requests in order. It is a test double of a provider, not a web server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, connection

from bnpl.gateway.base import GatewayRequestError
from bnpl.gateway.endpoint import ENDPOINTS, answer, request_data
from bnpl.gateway.faults import SandboxFaults, sandbox_faults_load
from bnpl.thread_pools import shutdown_closing_connections

logger = logging.getLogger(__name__)

PREFIX = "/sandbox/gateway/"
MAX_BODY = 64 * 1024
MAX_HEAD = 16 * 1024
#: Idle keep-alive connections are closed after this long, as a provider's load balancer would.
IDLE_TIMEOUT_S = 75.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Unavailable(Exception):
    """The database could not serve the request: answered 503, so the client's outcome is unknown."""


def _on_db_thread(function: Any, *args: Any) -> Any:
    """Run ``function`` on a pool thread; a broken connection is closed (the next call opens a new one)."""
    try:
        return function(*args)
    except (DatabaseError, InterfaceError) as exc:
        logger.warning("sandbox server: database error, answering 503", exc_info=True)
        with contextlib.suppress(Exception):
            connection.close()
        raise _Unavailable(str(exc)) from exc


def _answer_if_waited(
    endpoint: str, data: dict[str, Any], waited_ms: int
) -> tuple[SandboxFaults, tuple[int, dict[str, Any]] | None]:
    """The current faults, and the answer when ``waited_ms`` covered their latency (None: wait longer first)."""
    faults = sandbox_faults_load()
    if faults.latency_ms > waited_ms:
        return faults, None
    return faults, answer(endpoint, data, faults)


class SandboxServer:
    """The request handling of one process: an event loop's connections and a pool of database threads."""

    def __init__(self, *, threads: int = 4) -> None:
        if not getattr(settings, "BNPL_SANDBOX_HTTP_ENABLED", False):
            raise ImproperlyConfigured("the sandbox gateway server needs BNPL_SANDBOX_HTTP_ENABLED=1")
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sandbox-db")
        self._writers: set[asyncio.StreamWriter] = set()
        #: The added latency the faults had at this process's last request (what the next one waits first).
        self._latency_ms = 0

    async def _dispatch(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        endpoint = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
        if endpoint not in ENDPOINTS:
            return 404, {"error": "not found"}
        if method != "POST":
            return 405, {"error": "POST only"}
        try:
            data = request_data(body)
        except GatewayRequestError as exc:
            return 400, {"error": str(exc)}
        loop = asyncio.get_running_loop()
        try:
            # Wait the latency the provider had at its last request, then read the faults and, when that
            # wait was long enough, process in the same database call: one call per request, not two.
            waited = self._latency_ms
            if waited:
                await asyncio.sleep(waited / 1000)
            faults, reply = await loop.run_in_executor(
                self.pool, _on_db_thread, _answer_if_waited, endpoint, data, waited
            )
            self._latency_ms = faults.latency_ms
            if reply is None:  # the latency was raised meanwhile: wait the rest, then process
                await asyncio.sleep((faults.latency_ms - waited) / 1000)
                reply = await loop.run_in_executor(self.pool, _on_db_thread, answer, endpoint, data, faults)
            return reply
        except _Unavailable:
            return 503, {"error": "service unavailable (database)"}
        except Exception:
            logger.exception("sandbox server: %s failed", endpoint)
            return 500, {"error": "internal error"}

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests of one connection in order until the client closes it or asks to."""
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                    return
                keep_alive, status, payload = await self._request(head, reader)
                body = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode("latin-1")
                    + body
                )
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _request(self, head: bytes, reader: asyncio.StreamReader) -> tuple[bool, int, dict[str, Any]]:
        """(keep the connection open, status, JSON body) for one request whose head has been read."""
        if len(head) > MAX_HEAD:
            return False, 400, {"error": "request head too large"}
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            return False, 400, {"error": "malformed request line"}
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        connection_header = headers.get("connection", "").lower()
        keep_alive = connection_header == "keep-alive" if version == "HTTP/1.0" else connection_header != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return False, 411, {"error": "send a Content-Length body"}
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return False, 400, {"error": "malformed Content-Length"}
        if length < 0 or length > MAX_BODY:
            return False, 413, {"error": "body too large"}
        try:
            body = await reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            return False, 400, {"error": "incomplete body"}
        status, payload = await self._dispatch(method, target.split("?", 1)[0], body)
        return keep_alive, status, payload

    async def serve(self, sock: socket.socket, stop: asyncio.Event) -> None:
        """Serve on a listening socket until ``stop`` is set, then hang up on every kept-alive connection."""
        server = await asyncio.start_server(self.handle_connection, sock=sock, limit=MAX_HEAD + MAX_BODY)
        await stop.wait()
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)

    def close(self) -> None:
        """Close every pool thread's database connection, then the pool."""
        shutdown_closing_connections(self.pool, self.threads)


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _serve_in_this_process(sock: socket.socket, threads: int) -> None:
    server = SandboxServer(threads=threads)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await server.serve(sock, stop)

    try:
        asyncio.run(main())
    finally:
        server.close()


def run(host: str, port: int, *, processes: int = 1, threads: int = 4) -> None:
    """Serve until SIGTERM/SIGINT: ``processes`` processes (forked) sharing one socket, ``threads`` each."""
    if not getattr(settings, "BNPL_SANDBOX_HTTP_ENABLED", False):
        raise ImproperlyConfigured("the sandbox gateway server needs BNPL_SANDBOX_HTTP_ENABLED=1")
    connection.close()  # a forked child must never share the parent's database connection
    sock = listening_socket(host, port)
    if processes <= 1:
        _serve_in_this_process(sock, threads)
        return
    children = []
    for _n in range(processes):
        pid = os.fork()
        if pid == 0:
            try:
                _serve_in_this_process(sock, threads)
            finally:
                os._exit(0)
        children.append(pid)
    stopping = threading.Event()

    def forward(signum: int, _frame: Any) -> None:
        stopping.set()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
    sock.close()


@contextlib.contextmanager
def serve_in_thread(*, threads: int = 2, host: str = "127.0.0.1") -> Iterator[str]:
    """Run the server on a free port in a background thread of this process; yields its base URL.

    For tests that need a real provider socket next to the test database (as Django's ``live_server``
    does for the views). The database threads close their connections when the block ends.
    """
    sock = listening_socket(host, 0)
    server = SandboxServer(threads=threads)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sock, stop),), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{sock.getsockname()[1]}{PREFIX}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
        sock.close()
        server.close()
