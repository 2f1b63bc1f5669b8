"""``manage.py serve_sandbox_gateway``: the sandbox provider on its own lean HTTP server (``bnpl.gateway.server``).

For benchmarks and fault tests that need a provider answering faster than the web app's Django views can.
Needs ``BNPL_SANDBOX_HTTP_ENABLED=1`` (it moves simulated money and takes no credentials). Output is for
operators and stays English, like Django's own commands.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bnpl.gateway.server import run


class Command(BaseCommand):
    help = "Serve the sandbox payment provider at http://HOST:PORT/sandbox/gateway/ until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8100", help="HOST:PORT to listen on (default 127.0.0.1:8100)")
        parser.add_argument("--processes", type=int, default=1, help="Server processes sharing the port (default 1).")
        parser.add_argument(
            "--threads",
            type=int,
            default=4,
            help="Asynchronous database connections per process for charges, and as many threads (each with its "
            "own connection) for the rest: up to 2 x N connections per process (default 4).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, _sep, port = options["bind"].rpartition(":")
        if not host or not port.isdigit():
            raise CommandError("--bind must be HOST:PORT")
        run(host, int(port), processes=options["processes"], threads=options["threads"])
