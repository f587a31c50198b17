"""The core data model: wallets, nodes with hashed tokens, GPUs and their constraints."""

import pytest
from django.db import IntegrityError, transaction

from contributors.models import GPU, Contributor, Node, Wallet

pytestmark = pytest.mark.django_db

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example


@pytest.fixture
def contributor():
    return Contributor.objects.create(username=ADDRESS)


@pytest.fixture
def node(contributor):
    node = Node(owner=contributor, name="rig-1", hostname="rig-1.lan")
    node.token = node.set_new_token()
    node.save()
    return node


def test_wallet_address_is_stored_checksummed_and_unique_across_case(contributor):
    wallet = Wallet.objects.create(contributor=contributor, address=ADDRESS.lower())
    assert wallet.address == ADDRESS

    other = Contributor.objects.create(username="someone")
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.create(contributor=other, address=ADDRESS.upper().replace("0X", "0x"))


def test_contributor_has_at_most_one_payout_wallet(contributor):
    first = Wallet.objects.create(contributor=contributor, address=ADDRESS, is_payout=True)
    second_address = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.create(contributor=contributor, address=second_address, is_payout=True)

    second = Wallet.objects.create(contributor=contributor, address=second_address)
    second.make_payout()

    first.refresh_from_db()
    assert first.is_payout is False
    assert contributor.payout_wallet == second


def test_node_token_is_stored_only_as_a_hash(node):
    stored = Node.objects.values("token_prefix", "token_hash").get(pk=node.pk)
    assert node.token.startswith(f"omt_{stored['token_prefix']}_")
    assert node.token not in stored.values()
    assert len(stored["token_hash"]) == 64


def test_node_authenticates_its_own_token_only(node):
    assert Node.authenticate(node.token) == node
    assert Node.authenticate(node.token[:-1] + ("A" if node.token[-1] != "A" else "B")) is None
    assert Node.authenticate("omt_000000000000_nope") is None
    assert Node.authenticate("not a token") is None
    assert Node.authenticate("") is None


def test_rotating_a_token_invalidates_the_old_one(node):
    old = node.token
    new = node.set_new_token()
    node.save()

    assert Node.authenticate(old) is None
    assert Node.authenticate(new) == node


def test_revoked_node_is_still_found_so_callers_can_say_revoked(node):
    node.revoke()
    found = Node.authenticate(node.token)
    assert found == node
    assert found.is_revoked


def test_gpu_committed_memory_cannot_exceed_total(node):
    with pytest.raises(IntegrityError), transaction.atomic():
        GPU.objects.create(
            node=node, uuid="GPU-1", name="NVIDIA L40S", memory_total_mib=46068,
            committed_memory_mib=46069,
        )  # fmt: skip


def test_gpu_commits_all_memory_by_default(node):
    gpu = GPU.objects.create(node=node, uuid="GPU-2", name="NVIDIA L40S", memory_total_mib=46068)
    assert gpu.effective_committed_mib == 46068
    gpu.committed_memory_mib = 20000
    gpu.save()
    assert gpu.effective_committed_mib == 20000


def test_gpu_uuid_is_unique_across_nodes(node, contributor):
    GPU.objects.create(node=node, uuid="GPU-3", name="NVIDIA H100", memory_total_mib=81559)
    other = Node(owner=contributor, name="rig-2")
    other.set_new_token()
    other.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        GPU.objects.create(node=other, uuid="GPU-3", name="NVIDIA H100", memory_total_mib=81559)


def test_mig_instance_points_at_its_physical_gpu(node):
    parent = GPU.objects.create(node=node, uuid="GPU-4", name="NVIDIA H100", memory_total_mib=81559)
    mig = GPU.objects.create(
        node=node, uuid="MIG-4a", name="NVIDIA H100 MIG 1g.10gb", memory_total_mib=9728,
        mig_parent=parent,
    )  # fmt: skip
    assert list(parent.mig_instances.all()) == [mig]
