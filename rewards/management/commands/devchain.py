"""Run the demo's local chain (rewards.devchain): py-evm behind JSON-RPC on 127.0.0.1.

`--print-env` prints the `export` lines that point the portal at it (the Makefile's `run` target
evaluates them before honcho starts web, worker, beat and this chain).
"""

import contextlib
import shlex
import signal
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError


class Command(BaseCommand):
    help = "Run a local EVM chain with the OMNIT token and the RewardDistributor (DEBUG only)."

    def add_arguments(self, parser):
        from rewards import devchain

        parser.add_argument("--port", type=int, default=devchain.DEFAULT_PORT)
        parser.add_argument(
            "--block-time", type=float, default=devchain.BLOCK_TIME_S,
            help="seconds between blocks mined besides those of transactions",
        )  # fmt: skip
        parser.add_argument(
            "--print-env", action="store_true",
            help="print the export lines that point the portal at this chain, and exit",
        )  # fmt: skip
        parser.add_argument(
            "--keep-portal-records", action="store_true",
            help="leave the portal's claims of an earlier run of this chain as they are",
        )  # fmt: skip

    def handle(self, *args, port: int, block_time: float, print_env: bool, **options):
        from rewards import devchain

        # Its keys are public: anyone could sign vouchers and spend its relayer's ETH.
        if not settings.DEBUG:
            raise CommandError("The demo chain runs only with DEBUG=true: its keys are public.")
        if print_env:
            for name, value in devchain.env(port).items():
                self.stdout.write(f"export {name}={shlex.quote(value)}")
            return

        chain = devchain.DevChain().start()
        if not options["keep_portal_records"]:
            try:
                done = devchain.forget_previous_chain(chain)
            except DatabaseError as exc:  # not migrated yet: nothing to forget
                self.stderr.write(f"devchain: portal records not checked: {exc}")
            else:
                if done["expired"] or done["repaid"]:
                    self.stdout.write(
                        f"devchain: new chain; {done['expired']} open vouchers of the previous "
                        f"one expired, {done['repaid']} wallets' confirmed claims paid again"
                    )
        server = devchain.make_server(chain, "127.0.0.1", port)
        stop = threading.Event()
        chain.mine_every(block_time, stop)
        self.stdout.write(
            f"devchain: chain {chain.chain_id} on http://127.0.0.1:{port}; "
            f"token {devchain.TOKEN_ADDRESS}, distributor {devchain.DISTRIBUTOR_ADDRESS}, "
            f"relayer {devchain.RELAYER}; a block every {block_time:g} s"
        )
        self.stdout.flush()
        # honcho and systemd stop processes with SIGTERM: leave through the cleanup path.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever(poll_interval=0.2)
        finally:
            stop.set()
            server.server_close()
