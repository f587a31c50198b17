"""Enrolling a machine: an agent trades a single-use code for its node and its token."""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contributors.models import EnrollmentCode, Node
from contributors.telemetry.inventory import register_gpus
from portal.lib.errors import Refused


@dataclass(frozen=True)
class Enrolled:
    node: Node
    token: str
    rejected_gpus: list


def enroll(code: str, hostname: str, agent_version: str, gpus: list) -> Enrolled:
    """Spend `code` and create the node with its GPUs; Refused says why not."""
    row = EnrollmentCode.holding(code, EnrollmentCode.objects.select_related("owner"))
    if row is None:
        raise Refused(400, "invalid_enrollment_code", "This enrollment code is not valid.")
    if row.used_at is not None:
        raise Refused(409, "enrollment_code_used", "This enrollment code was already used.")
    now = timezone.now()
    if row.expires_at <= now:
        raise Refused(
            410, "enrollment_code_expired", "This enrollment code expired; create a new one."
        )
    limit = settings.MAX_NODES_PER_CONTRIBUTOR
    if Node.objects.filter(owner=row.owner, revoked_at__isnull=True).count() >= limit:
        # Checked before the code is spent, so it still works once a machine is revoked.
        raise Refused(
            409,
            "too_many_nodes",
            f"This account already has {limit} machines; revoke one to add another.",
        )
    with transaction.atomic():
        if not row.spend():
            raise Refused(409, "enrollment_code_used", "This enrollment code was already used.")
        node = Node(
            owner=row.owner,
            # The name is the owner's label for the machine; the full hostname stays beside it.
            name=(hostname or f"machine-{row.pk}")[: Node._meta.get_field("name").max_length],
            hostname=hostname,
            agent_version=agent_version,
        )
        token = node.set_new_token()
        node.save()
        EnrollmentCode.objects.filter(pk=row.pk).update(node=node)
        rejected, _ = register_gpus(node, gpus, now)
    return Enrolled(node=node, token=token, rejected_gpus=rejected)
