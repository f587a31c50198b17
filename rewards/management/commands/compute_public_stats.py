"""Compute the public figures (/network/, /leaderboard/) now, as beat does every
PUBLIC_STATS_EVERY_S: for a fresh deployment that should not say "computing" for a minute."""

from django.core.management.base import BaseCommand

from rewards.public import store


class Command(BaseCommand):
    help = "Compute the /network/ and /leaderboard/ figures now and store them in the cache."

    def handle(self, *args, **options):
        figures = store.compute_all()
        computed = figures.get("computed_at", "now") if isinstance(figures, dict) else "now"
        self.stdout.write(f"public figures computed ({computed})")
