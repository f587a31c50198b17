"""Run the demo fleet: simulated agents and scheduler posting to a running portal."""

import contextlib
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run the simulated demo fleet against a running portal until stopped."

    def add_arguments(self, parser):
        parser.add_argument(
            "--portal",
            default=settings.DEMO_PORTAL_URL,
            help="base URL of the running portal (default DEMO_PORTAL_URL)",
        )

    def handle(self, *args, portal: str, **options):
        from portal.demo import run_fleet

        # Its contributors' keys are public, so a fleet in production would hand their
        # accounts to anyone.
        if not settings.DEBUG:
            raise CommandError(
                "The demo fleet runs only with DEBUG=true: its wallets' keys are public."
            )

        # honcho and systemd stop processes with SIGTERM: leave through the cleanup path.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            run_fleet(portal)
