"""The benchmarks' own database: created on the project's server, and this process pointed at it.

Used by every script in ``bench/`` before Django is configured, so the process (and anything it starts,
such as gunicorn) runs against the bench database with production-like settings.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def server_settings() -> dict[str, Any]:
    """Connection settings of the server the project uses (DATABASE_URL, else the embedded server)."""
    import environ

    env = environ.Env()
    environ.Env.read_env(ROOT / ".env", overwrite=False)
    if env.str("DATABASE_URL", default=""):
        return env.db_url("DATABASE_URL")
    from bnpl.embedded_db import embedded_database_settings

    data_dir = Path(env.str("EMBEDDED_DB_DIR", default=str(ROOT / ".data" / "pg")))
    return embedded_database_settings(data_dir)


def database_url(server: dict[str, Any], name: str) -> str:
    """A DATABASE_URL for database ``name`` on ``server`` (a unix socket directory goes in the query)."""
    user = urllib.parse.quote(server.get("USER") or "postgres")
    password = server.get("PASSWORD") or ""
    auth = f"{user}:{urllib.parse.quote(password)}" if password else user
    host, port = str(server.get("HOST") or ""), str(server.get("PORT") or "5432")
    if host.startswith("/"):
        return f"postgres://{auth}@/{name}?host={urllib.parse.quote(host)}&port={port}"
    return f"postgres://{auth}@{host}:{port}/{name}"


def use_bench_database(name: str, *, drop: bool = True) -> tuple[str, bool]:
    """Create database ``name`` (dropped first when ``drop``) and point this process at it.

    Returns the DATABASE_URL and whether the database already existed and was kept. Settings are
    production-like: DEBUG off (it keeps every query in memory), plain HTTP on this machine, quiet logs.
    """
    import psycopg

    server = server_settings()
    params: dict[str, Any] = {"user": server.get("USER") or "postgres", "dbname": "postgres", "autocommit": True}
    for key, param in (("HOST", "host"), ("PORT", "port"), ("PASSWORD", "password")):
        if server.get(key):
            params[param] = str(server[key])
    with psycopg.connect(**params) as conn:
        if drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        kept = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if not kept:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(server, name)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"  # plain HTTP on this machine (docs/security.md)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-0123456789abcdefghijklmnop")
    os.environ["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bnpl.settings")
    return url, kept
