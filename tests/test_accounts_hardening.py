"""Accounts against misuse: unlinked wallets, public demo keys, weak production secrets."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from contributors.models import Contributor, Wallet
from portal.demo import demo_account
from tests.support.siwe import ALICE, BOB, CAROL, link, post_json, sign_in

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parent.parent
STRONG_KEY = "x7#pQ2!vL9@wR4$zT8^mN3&bK6*yH1(gF5)dS0_aJ-cE+uI=oP{lM}nB[vC]xZ;"


def browser() -> Client:
    return Client(enforce_csrf_checks=True)


def unlink(client, account):
    return client.delete(
        f"/api/v1/me/wallets/{account.address}",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )


def me(client) -> dict:
    return client.get("/api/v1/me").json()


def wallets(client) -> list[str]:
    return [w["address"] for w in me(client)["wallets"]]


# --- A wallet unlinked from its first account --------------------------------------------------


def test_first_wallet_unlinked_then_used_again_signs_in_as_a_new_contributor():
    first = browser()
    assert sign_in(first, ALICE).status_code == 200
    assert link(first, BOB).status_code == 201
    assert unlink(first, ALICE).status_code == 204

    again = browser()
    response = sign_in(again, ALICE)

    assert response.status_code == 200, response.content
    assert me(again)["id"] != me(first)["id"]  # never back into the account it left
    assert me(again)["wallets"][0]["address"] == ALICE.address
    assert me(again)["wallets"][0]["is_payout"] is True
    assert wallets(first) == [BOB.address]
    assert Contributor.objects.count() == 2
    # The account it left has no claim on it: once free again, that account may link it back.
    assert unlink(again, ALICE).status_code == 409  # its new account's only wallet


def test_a_wallet_can_leave_and_come_back_more_than_once():
    accounts = []
    for other in (BOB, CAROL):
        client = browser()
        assert sign_in(client, ALICE).status_code == 200
        assert link(client, other).status_code == 201
        assert unlink(client, ALICE).status_code == 204
        accounts.append(me(client)["id"])

    last = browser()
    assert sign_in(last, ALICE).status_code == 200
    assert len({*accounts, me(last)["id"]}) == 3
    assert Wallet.objects.get(address=ALICE.address).contributor_id == me(last)["id"]


# --- Demo keys are public ----------------------------------------------------------------------

DEMO = demo_account("alice")


@pytest.mark.parametrize(("debug", "demo_fleet"), [(False, False), (True, False), (False, True)])
def test_demo_wallet_sign_in_is_refused_unless_the_demo_runs(settings, debug, demo_fleet):
    settings.DEBUG, settings.DEMO_FLEET = debug, demo_fleet
    client = browser()

    response = sign_in(client, DEMO)

    assert response.status_code == 403
    assert response.json()["error"] == "demo_wallet"
    assert "DEMO_FLEET" in response.json()["detail"]
    assert client.get("/api/v1/me").status_code == 403
    assert not Wallet.objects.filter(address=DEMO.address).exists()

    settings.DEBUG, settings.DEMO_FLEET = True, True  # where the demo runs, it signs in
    assert sign_in(client, DEMO).status_code == 200
    assert wallets(client) == [DEMO.address]


def test_demo_wallet_cannot_be_linked_unless_the_demo_runs(settings):
    settings.DEBUG, settings.DEMO_FLEET = False, False
    client = browser()
    sign_in(client, ALICE)

    response = link(client, DEMO)

    assert response.status_code == 403
    assert response.json()["error"] == "demo_wallet"
    assert wallets(client) == [ALICE.address]


def test_demo_shortcut_is_refused_unless_the_demo_runs(settings):
    settings.DEBUG, settings.DEMO_FLEET = False, True
    client = browser()
    client.get("/auth/nonce")

    response = post_json(client, "/auth/demo", {"name": "alice"})

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert not Wallet.objects.exists()


# --- Processes that must not start -------------------------------------------------------------


def run_manage(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={
            **base,
            "VAR_DIR": str(tmp_path / "var"),
            "ALLOWED_HOSTS": "portal.example.org",
            "DEMO_FLEET": "true",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_fleet_refuses_to_run_without_debug(tmp_path):
    result = run_manage(
        ["demo_fleet", "--portal", "http://127.0.0.1:9"],
        {"DEBUG": "false", "SECRET_KEY": STRONG_KEY},
        tmp_path,
    )

    assert result.returncode != 0
    assert "demo fleet runs only with DEBUG=true" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "key",
    [
        "s3cr3t-but-short",  # fewer than 50 characters
        "ab" * 40,  # long, but fewer than 5 distinct characters
        "django-insecure-" + STRONG_KEY,  # startproject's throwaway
    ],
)
def test_production_refuses_a_weak_secret_key(tmp_path, key):
    result = run_manage(["check"], {"DEBUG": "false", "SECRET_KEY": key}, tmp_path)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY" in result.stderr
    assert "at least 50 characters" in result.stderr
    assert key not in result.stderr  # the refusal never prints the secret
    # Development keeps accepting any key, so `make run` needs no secret at all.
    assert run_manage(["check"], {"DEBUG": "true", "SECRET_KEY": key}, tmp_path).returncode == 0


def test_a_weak_secret_key_from_a_file_is_refused_too(tmp_path):
    path = tmp_path / "secret"
    path.write_text("a" * 64 + "\n")

    result = run_manage(["check"], {"DEBUG": "false", "SECRET_KEY_FILE": str(path)}, tmp_path)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
