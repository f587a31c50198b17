"""Network admins run the network from Django admin: every model lists, searches and filters."""

import pytest
from django.urls import reverse

from contributors.models import GPU, Contributor, Node, Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet():
    owner = Contributor.objects.create(username="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    Wallet.objects.create(contributor=owner, address=owner.username, is_payout=True)
    node = Node(owner=owner, name="rig-1", hostname="rig-1.lan")
    node.set_new_token()
    node.save()
    GPU.objects.create(node=node, uuid="GPU-abc", name="NVIDIA H100", memory_total_mib=81559)
    return node


@pytest.mark.parametrize("model", ["contributor", "wallet", "node", "gpu"])
def test_changelist_and_change_page_render(admin_client, fleet, model):
    changelist = admin_client.get(reverse(f"admin:contributors_{model}_changelist"))
    assert changelist.status_code == 200

    objects = {
        "contributor": fleet.owner,
        "wallet": fleet.owner.wallets.get(),
        "node": fleet,
        "gpu": fleet.gpus.get(),
    }
    change = admin_client.get(
        reverse(f"admin:contributors_{model}_change", args=[objects[model].pk])
    )
    assert change.status_code == 200


def test_gpu_search_finds_by_owner_wallet(admin_client, fleet):
    url = reverse("admin:contributors_gpu_changelist")
    found = admin_client.get(url, {"q": "0x5aAeb6"})
    missing = admin_client.get(url, {"q": "0xdeadbeef"})

    assert "GPU-abc" in found.content.decode()
    assert "GPU-abc" not in missing.content.decode()


def test_node_token_hash_is_read_only_in_admin(admin_client, fleet):
    page = admin_client.get(reverse("admin:contributors_node_change", args=[fleet.pk]))
    html = page.content.decode()

    assert fleet.token_hash in html  # shown, so admins can match a prefix to a node
    assert 'name="token_hash"' not in html  # but not editable


def test_admin_revokes_nodes_with_an_action(admin_client, fleet):
    response = admin_client.post(
        reverse("admin:contributors_node_changelist"),
        {"action": "revoke_nodes", "_selected_action": [fleet.pk]},
        follow=True,
    )

    assert response.status_code == 200
    fleet.refresh_from_db()
    assert fleet.revoked_at is not None
    assert "Revoked 1 node(s)." in response.content.decode()


def test_admin_requires_staff(client, fleet):
    response = client.get(reverse("admin:contributors_node_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
