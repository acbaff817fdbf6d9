from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gpucloud import embedded


class Command(BaseCommand):
    help = (
        "Serve the platform in one process: uvicorn (ASGI) plus an in-process Celery worker and beat. "
        "This is what `make run` uses; stop it with Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-background", action="store_true", help="Do not start the in-process worker and beat")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            embedded.check_port_free(options["host"], options["port"])
            self.stdout.write(f"gpucloud: serving on http://{options['host']}:{options['port']}/ (Ctrl-C stops)")
            embedded.serve(host=options["host"], port=options["port"], background=not options["no_background"])
        except embedded.PortInUse as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled; everything is already stopped
        self.stdout.write("gpucloud: stopped")
