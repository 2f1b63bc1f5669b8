"""A lean HTTP server for the sandbox provider: the Django views' endpoints without Django's request cycle.

``manage.py serve_sandbox_gateway --bind 127.0.0.1:8100`` serves ``POST /sandbox/gateway/<endpoint>``
(charge, refund, payout, query) with the same processing and faults as the views in the web app
(``bnpl.gateway.endpoint``): ``HttpSandboxGateway`` cannot tell the two apart. It exists because a
payment provider serves many more requests per second than a Django request cycle (middleware,
sessions, URL resolution: several ms of CPU per request) allows on the platform's own machine, and
a charge-run benchmark against a provider slower than the run measures the provider.

One asyncio event loop per process holds the connections (HTTP/1.1 keep-alive) and waits the
configured latency without occupying a thread. The loop reads the faults row and runs charges itself,
on up to ``--threads`` asynchronous psycopg connections of its own: a hop to a database thread and back
cost more CPU than the charge (0.52 ms of server CPU per charge with the hop, 0.39 without). Requests
that become ready in the same turn of the loop share the database work, as a provider's own write path
batches its commits: one read of the faults row for those that arrive together, and one statement (the
in-process sandbox's batch statement, ``sandbox_charge_batch``) for the charges whose latency ends
together. Each request still gets its own answer, the same as alone, and a read starts only after the
requests it serves arrived, so a fault switched on applies to the next request. Refunds, payouts and
queries, rare and written with the ORM, run on a pool of ``--threads`` threads, each with its own
Django connection. A request reads the faults, waits their latency, then is processed, as by the web
app's views.
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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, connection

from bnpl.gateway.base import GatewayRequestError
from bnpl.gateway.endpoint import (
    ENDPOINTS,
    answer,
    fault_key,
    reply,
    request_data,
    stopped_before_processing,
)
from bnpl.gateway.faults import LOAD_SQL, SandboxFaults, faults_from_row
from bnpl.gateway.sandbox import (
    CHARGE_BATCH_SQL,
    ChargeRequest,
    charge_batch_params,
    charge_batch_rows,
    charge_outcome,
    charge_request,
)
from bnpl.models import SandboxFaultConfig
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


def _connection_params() -> dict[str, Any]:
    """The default database's connection parameters as Django builds them, for psycopg connections of our own."""
    params = connection.get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold"):  # Django's cursor, adapters, no preparing
        params.pop(name, None)
    return params


class _Connections:
    """Asynchronous psycopg connections of this process, for the statements the event loop runs itself.

    At most ``size`` are open, each in autocommit and used by one statement at a time; a statement is
    prepared on a connection's first use of it. A connection whose statement failed other than on a
    constraint is closed (the next statement opens a new one) and the request answered 503.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._params = _connection_params()
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots: asyncio.Semaphore | None = None

    async def fetchone(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            reusable = False
            try:
                cursor = await conn.execute(sql, params, prepare=True)
                rows = await cursor.fetchall()
                reusable = True
                return rows
            except psycopg.IntegrityError:
                reusable = True  # the statement was refused; the connection is fine
                raise
            except psycopg.Error as exc:
                logger.warning("sandbox server: database error, answering 503", exc_info=True)
                raise _Unavailable(str(exc)) from exc
            finally:
                if reusable:
                    self._idle.append(conn)
                else:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def _connect(self) -> psycopg.AsyncConnection:
        try:
            return await psycopg.AsyncConnection.connect(**self._params, autocommit=True)
        except psycopg.Error as exc:
            logger.warning("sandbox server: cannot connect to the database, answering 503", exc_info=True)
            raise _Unavailable(str(exc)) from exc

    async def close(self) -> None:
        """Close the idle connections; the next statement opens new ones (on whichever loop then runs)."""
        self._slots = None
        while self._idle:
            with contextlib.suppress(Exception):
                await self._idle.pop().close()


class _Together:
    """Runs one database call for every caller that asks in the same turn of the event loop.

    The first caller of a turn schedules the call for the loop's next turn; every caller of the turn
    joins it and gets its own share of the answer (``split``). The call starts after every one of them
    asked, so it sees whatever was committed before any of them arrived: as fresh as a call of their
    own. An exception of the call is each caller's.
    """

    def __init__(
        self,
        call: Callable[[list[Any]], Awaitable[Any]],
        split: Callable[[list[Any], Any], Sequence[Any]],
    ) -> None:
        self._call = call  # the callers' arguments -> the answer
        self._split = split  # the callers' arguments and the answer -> one result per caller, in their order
        self._waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, argument: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._start)
        future = loop.create_future()
        self._waiting.append((argument, future))
        return await future

    def _start(self) -> None:
        callers, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._run(callers))
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _run(self, callers: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        arguments = [argument for argument, _future in callers]
        try:
            results = self._split(arguments, await self._call(arguments))
        except BaseException as exc:  # every caller gets the failure, whatever it is
            for _argument, future in callers:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_argument, future), result in zip(callers, results, strict=True):
            if not future.done():
                future.set_result(result)


class SandboxServer:
    """The request handling of one process: an event loop's connections and a pool of database threads."""

    def __init__(self, *, threads: int = 4) -> None:
        if not getattr(settings, "BNPL_SANDBOX_HTTP_ENABLED", False):
            raise ImproperlyConfigured("the sandbox gateway server needs BNPL_SANDBOX_HTTP_ENABLED=1")
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sandbox-db")
        self.connections = _Connections(self.threads)
        self._writers: set[asyncio.StreamWriter] = set()
        self._faults = _Together(self._load_faults, lambda callers, faults: [faults] * len(callers))
        self._charges = _Together(self._run_charges, lambda _callers, rows: rows)

    async def _load_faults(self, _callers: list[None]) -> SandboxFaults:
        return faults_from_row(await self.connections.fetchone(LOAD_SQL, [SandboxFaultConfig.SINGLETON_PK]))

    async def _run_charges(self, requests: list[ChargeRequest]) -> list[Sequence[object]]:
        """The rows of one batch statement for the charges of a turn, in their order (``sandbox_charge_batch``)."""
        order, params = charge_batch_params(requests)
        return charge_batch_rows(order, await self.connections.fetchall(CHARGE_BATCH_SQL, params))

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
        try:
            faults = await self._faults()
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            if endpoint == "charge":
                return await self._charge(data, faults)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, _on_db_thread, answer, endpoint, data, faults)
        except _Unavailable:
            return 503, {"error": "service unavailable (database)"}
        except Exception:
            logger.exception("sandbox server: %s failed", endpoint)
            return 500, {"error": "internal error"}

    async def _charge(self, data: dict[str, Any], faults: SandboxFaults) -> tuple[int, dict[str, Any]]:
        """``answer("charge", …)`` with the charge run in this turn's batch statement, on this loop's connections.

        The same steps and result as ``sandbox_charge`` (``bnpl.gateway.endpoint``, ``bnpl.gateway.sandbox``),
        without a hop to a database thread and back: the hot path of a charge run. A batch refused by a
        constraint (a colliding random reference) processed nothing: each of its requests is answered by
        the thread path, which draws another reference.
        """
        key = fault_key("charge", data)
        if (stopped := stopped_before_processing(key, faults)) is not None:
            return stopped
        try:
            request = charge_request(
                data.get("idempotency_key"),
                data.get("funding_source"),
                data.get("amount"),
                risk_reject=key is not None and faults.hits("risk_reject", key),
            )
            try:
                row = await self._charges(request)
            except psycopg.IntegrityError:  # a colliding random reference: the thread path draws another
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.pool, _on_db_thread, answer, "charge", data, faults)
            result = charge_outcome(request, row)
        except GatewayRequestError as exc:
            return 400, {"error": str(exc)}
        return reply(key, faults, result)

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
        await self.connections.close()

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
