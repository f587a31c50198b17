"""Operator commands: create_enrollment_code and create_service_token.

Both print a secret once, as the last word of their output, and store only its hash.
"""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from contributors import tokens
from contributors.models import Contributor, EnrollmentCode, Node, ServiceToken, Wallet
from contributors.signin import contributor_for_sign_in, link_wallet
from tests.support.siwe import ALICE, BOB

pytestmark = pytest.mark.django_db


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def enroll_with(code: str):
    body = {"enrollment_code": code, "hostname": "rig-1", "agent_version": "0.1.0", "gpus": []}
    return Client().post("/api/v1/agent/enroll", body, content_type="application/json")


# --- create_enrollment_code ------------------------------------------------------------------


def test_enrollment_code_is_printed_last_and_the_contributor_created():
    before = timezone.now()
    output = run("create_enrollment_code", ALICE.address.lower())
    code = output.split()[-1]

    contributor = Contributor.objects.get()
    assert contributor.username == ALICE.address  # checksummed
    assert contributor.wallets.get().address == ALICE.address
    assert contributor.wallets.get().is_payout
    row = EnrollmentCode.objects.get()
    assert row.owner == contributor and row.used_at is None
    assert row.code_hash == tokens.digest(code)
    assert code not in row.code_hash
    assert before + timedelta(minutes=59) < row.expires_at <= timezone.now() + timedelta(hours=1)
    assert ALICE.address in output


def test_enrollment_code_for_an_existing_contributor_reuses_them():
    alice = contributor_for_sign_in(ALICE.address)
    first = run("create_enrollment_code", ALICE.address).split()[-1]
    second = run("create_enrollment_code", ALICE.address).split()[-1]

    assert first != second
    assert Contributor.objects.count() == 1
    assert EnrollmentCode.objects.filter(owner=alice).count() == 2


def test_enrollment_code_for_a_linked_wallet_belongs_to_its_contributor():
    alice = contributor_for_sign_in(ALICE.address)
    link_wallet(alice, BOB.address)
    code = run("create_enrollment_code", BOB.address).split()[-1]

    assert Contributor.objects.count() == 1
    assert EnrollmentCode.objects.get(code_hash=tokens.digest(code)).owner == alice


def test_printed_enrollment_code_enrolls_a_machine_once():
    code = run("create_enrollment_code", ALICE.address).split()[-1]

    response = enroll_with(code)
    assert response.status_code == 201
    node = Node.objects.get(pk=response.json()["node_id"])
    assert node.owner.username == ALICE.address

    again = enroll_with(code)
    assert (again.status_code, again.json()["error"]) == (409, "enrollment_code_used")


def test_enrollment_code_lifetime_follows_the_setting(settings):
    settings.ENROLLMENT_CODE_TTL_S = 600
    code = run("create_enrollment_code", ALICE.address).split()[-1]
    row = EnrollmentCode.objects.get()

    assert row.expires_at - row.created_at == timedelta(seconds=600)
    assert enroll_with(code).status_code == 201


@pytest.mark.parametrize(
    "address",
    [
        "0x123",
        "not-an-address",
        "0x" + "g" * 40,
        "0xF39fd6e51aad88f6f4ce6ab8827279cfffb92266",  # ALICE with a bad EIP-55 checksum
        "",
    ],
)
def test_enrollment_code_for_a_bad_address_is_a_command_error(address):
    with pytest.raises(CommandError):
        run("create_enrollment_code", address)
    assert not Contributor.objects.exists()
    assert not Wallet.objects.exists()
    assert not EnrollmentCode.objects.exists()


def test_enrollment_code_needs_an_address():
    with pytest.raises(CommandError):
        run("create_enrollment_code")


# --- create_service_token --------------------------------------------------------------------


def test_service_token_is_printed_last_and_stored_hashed():
    output = run("create_service_token", "--scope", "scheduler")
    token = output.split()[-1]

    row = ServiceToken.objects.get()
    assert (row.scope, row.name, row.revoked_at) == ("scheduler", "scheduler", None)
    assert row.token_hash == tokens.digest(token)
    assert token not in (row.token_hash, row.token_prefix)
    assert ServiceToken.authenticate(token, ServiceToken.Scope.SCHEDULER) == row


def test_service_token_authenticates_the_scheduler_api():
    token = run("create_service_token", "--scope", "scheduler").split()[-1]
    job = {
        "job_id": "j-1",
        "gpu_uuid": "GPU-unregistered",
        "kind": "inference",
        "started_at": "2025-01-01T00:00:00Z",
        "ended_at": None,
    }
    response = Client().post(
        "/api/v1/scheduler/jobs",
        job,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    # Past authentication: the request itself is judged.
    assert (response.status_code, response.json()["error"]) == (400, "unknown_gpu")

    wrong = Client().post(
        "/api/v1/scheduler/jobs",
        job,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}x"},
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_token")


def test_service_tokens_are_distinct_and_named():
    first = run("create_service_token", "--scope", "scheduler", "--name", "prod scheduler")
    second = run("create_service_token", "--scope", "scheduler")

    assert first.split()[-1] != second.split()[-1]
    assert sorted(ServiceToken.objects.values_list("name", flat=True)) == [
        "prod scheduler",
        "scheduler",
    ]


@pytest.mark.parametrize("args", [[], ["--scope", "admin"], ["--scope", ""]])
def test_service_token_needs_a_known_scope(args):
    with pytest.raises(CommandError):
        run("create_service_token", *args)
    assert not ServiceToken.objects.exists()
