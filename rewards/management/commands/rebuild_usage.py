"""Rebuild the usage accumulators from the raw samples, and let settlement trust them.

Run it once after upgrading an installation to accumulators, with the workers stopped (a drain
between its delete and its insert would count twice), from the end of the last settled epoch:

    python manage.py rebuild_usage            # from the last settled epoch's end
    python manage.py rebuild_usage --from 2026-12-01T00:00:00+00:00

Also for samples written into the table outside the drains (a restore, an import).
"""

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from contributors.models import Sample
from rewards import accumulators
from rewards.models import Epoch


class Command(BaseCommand):
    help = "Rebuild the usage accumulators from raw samples (from the last settled epoch on)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--from",
            dest="start",
            help="ISO 8601 time with its offset; default: the end of the last settled epoch",
        )

    def handle(self, *args, start=None, **options):
        if start:
            try:
                since = datetime.fromisoformat(start)
            except ValueError as exc:
                raise CommandError(f"--from: not an ISO 8601 time: {start!r}") from exc
            if since.tzinfo is None:
                raise CommandError("--from needs its UTC offset, e.g. 2026-12-01T00:00:00+00:00")
        else:
            since = Epoch.objects.order_by("-end").values_list("end", flat=True).first()
            if since is None:
                since = Sample.objects.order_by("ts").values_list("ts", flat=True).first()
        if since is None:
            since = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
        with transaction.atomic():
            rows = accumulators.rebuild(since)
        self.stdout.write(f"usage accumulators rebuilt from {since.isoformat()}: {rows} rows")
