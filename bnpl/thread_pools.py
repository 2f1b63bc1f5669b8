"""Thread pools whose threads use the database: shut down with each thread's own connection closed.

Django opens one connection per thread, and a pool thread's connection is not closed when the pool shuts
down: it stays open on the server until the process exits. Both pools that talk to PostgreSQL from threads
(the charge run's gateway calls, the HTTP sandbox server's database work) close them here.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection


def shutdown_closing_connections(pool: ThreadPoolExecutor, threads: int) -> None:
    """Have each of the pool's ``threads`` threads close its database connection, then shut the pool down.

    One task per thread: the barrier keeps a thread that finished its task from taking another's, so every
    thread runs exactly one of them (a thread that never started just opens no connection to close).
    """
    barrier = threading.Barrier(threads)

    def close_connection() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        connection.close()

    for future in [pool.submit(close_connection) for _n in range(threads)]:
        future.result()
    pool.shutdown(wait=True)
