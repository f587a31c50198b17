"""`python manage.py settle_epochs [--until ISO-8601]`: settle every due epoch, here and now."""

from django.core.management.base import BaseCommand, CommandError

from portal.lib.times import parse_time
from rewards import settlement
from rewards.wei import omnit


class Command(BaseCommand):
    help = "Settle every epoch whose grace has passed (ending by --until, if given)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--until", help="RFC 3339 time: settle only epochs that end at or before it."
        )

    def handle(self, *args, until=None, **options):
        limit = None
        if until is not None:
            limit = parse_time(until)
            if limit is None:
                raise CommandError("--until must be an RFC 3339 date-time with an offset.")
        count = 0
        while True:
            batch = settlement.settle_due(until=limit)
            for epoch in batch:
                self.stdout.write(
                    f"settled {epoch.start.isoformat()} - {epoch.end.isoformat()}: "
                    f"compute {omnit(epoch.compute_paid_wei)} OMNIT, "
                    f"idle {omnit(epoch.idle_paid_wei)} OMNIT to {epoch.gpu_count} GPUs, "
                    f"{epoch.held_out_count} held out"
                )
            count += len(batch)
            if not batch:
                break
        self.stdout.write(f"{count} epoch(s) settled.")
