"""Print a token for a network service such as the job scheduler (shown once, stored hashed)."""

from django.core.management.base import BaseCommand

from contributors.models import ServiceToken


class Command(BaseCommand):
    help = "Create a service token; the secret is the last word of the output."

    def add_arguments(self, parser):
        parser.add_argument("--scope", required=True, choices=ServiceToken.Scope.values)
        parser.add_argument("--name", default="", help="a label for admins")

    def handle(self, *args, scope: str, name: str, **options):
        row, token = ServiceToken.issue(scope, name)
        self.stdout.write(f"Service token {row.pk} for {row.scope} (shown once):\n{token}")
