"""Print a single-use enrollment code for a contributor, creating them if needed."""

from django.core.management.base import BaseCommand, CommandError

from contributors.addresses import checksummed
from contributors.models import Contributor, EnrollmentCode
from contributors.signin import contributor_for_sign_in


class Command(BaseCommand):
    help = "Create a single-use enrollment code for the contributor owning a wallet address."

    def add_arguments(self, parser):
        parser.add_argument("address", help="the contributor's wallet address (0x…)")

    def handle(self, *args, address: str, **options):
        if checksummed(address) is None:
            raise CommandError(f"{address!r} is not an Ethereum address (or its checksum is wrong)")
        contributor: Contributor = contributor_for_sign_in(checksummed(address))
        row, code = EnrollmentCode.issue(contributor)
        self.stdout.write(
            f"Enrollment code for {contributor.username}, valid until "
            f"{row.expires_at.isoformat(timespec='seconds')} (single use):\n{code}"
        )
