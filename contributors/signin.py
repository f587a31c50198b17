"""Signing in and linking wallets with EIP-4361 messages, the portal's side of the protocol.

`contributors.siwe` knows the message format and the signature; this module knows the portal:
which domain, origin and chain a message must name, which nonces we issued and whether they are
spent, how far ahead a client's clock may run, which wallets may not sign in here at all (the
demo's, whose keys are public, outside a demo run), and who owns which wallet.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from contributors import eip1271
from contributors.models import Contributor, SignInNonce, Wallet
from contributors.siwe import SiweError, SiweMessage, parse_message, verify
from portal.demo import demo_addresses, demo_runs
from portal.lib.errors import Refused
from portal.lib.times import rfc3339


class SignInError(Refused):
    """A refused sign-in or link; the API answers it like any `Refused` (code, detail)."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(status, code, detail)


@dataclass(frozen=True)
class Expected:
    """What a message must say to be accepted here: the request's site and the portal's chain."""

    domain: str
    origin: str  # scheme://host[:port] of the portal, as the browser sees it
    chain_id: int

    @classmethod
    def for_request(cls, request) -> "Expected":
        host = request.get_host()
        domain = settings.SIWE_DOMAIN or host
        scheme = "https" if request.is_secure() else "http"
        origin = f"{scheme}://{settings.SIWE_DOMAIN or host}"
        return cls(domain=domain, origin=origin, chain_id=settings.CHAIN_ID)


def issue_nonce() -> SignInNonce:
    # 16 alphanumeric characters: EIP-4361 wants at least 8, and letters+digits only.
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return SignInNonce.objects.create(nonce="".join(secrets.choice(alphabet) for _ in range(16)))


def message_for(address: str, nonce: SignInNonce, expected: Expected) -> str:
    """The exact text a wallet should sign: what /auth/nonce offers a client that names itself."""
    now = timezone.now()
    return SiweMessage(
        domain=expected.domain,
        address=address,
        statement=settings.SIWE_STATEMENT,
        uri=f"{expected.origin}/",
        version="1",
        chain_id=expected.chain_id,
        nonce=nonce.nonce,
        issued_at=rfc3339(now, "milliseconds"),
        expiration_time=rfc3339(
            nonce.issued_at + timedelta(seconds=settings.SIWE_NONCE_TTL_S), "milliseconds"
        ),
    ).to_text()


def check(message_text: str, signature: str, expected: Expected) -> SiweMessage:
    """Verify a signed message against this portal and spend its nonce; return the message.

    The nonce is spent last, once everything else holds, so a bad attempt never burns a nonce
    that its owner is about to use; two valid attempts racing spend it once between them.
    """
    try:
        message = parse_message(message_text)
    except SiweError as exc:
        raise SignInError(exc.code, exc.detail) from None
    if message.address in demo_addresses() and not demo_runs():
        # The demo's keys are in the repository: anyone can sign as these wallets.
        raise SignInError(
            "demo_wallet",
            "This is a demo wallet whose key is public; it signs in only where the demo runs "
            "(DEBUG=true and DEMO_FLEET=true).",
            403,
        )

    now = timezone.now()
    if message.issued_at_dt > now + timedelta(seconds=settings.SIWE_MAX_FUTURE_SKEW_S):
        raise SignInError(
            "not_yet_valid",
            f"The message was issued at {message.issued_at}, more than "
            f"{settings.SIWE_MAX_FUTURE_SKEW_S} s ahead of the portal's clock.",
        )
    try:
        verify(
            message,
            signature,
            domain=expected.domain,
            chain_id=expected.chain_id,
            uri_origin=expected.origin,
            now=now,
            # Smart-contract wallets (EIP-1271), asked on the configured chain, if any.
            contract_wallet=eip1271.is_valid_signature,
        )
    except SiweError as exc:
        status = 401 if exc.code == "bad_signature" else 400
        raise SignInError(exc.code, exc.detail, status) from None

    nonce = SignInNonce.objects.filter(nonce=message.nonce).first()
    if nonce is None:
        raise SignInError("unknown_nonce", "This portal did not issue the message's nonce.")
    if nonce.consumed_at is not None:
        raise SignInError("nonce_reused", "This message was already used to sign in.", 409)
    if now - nonce.issued_at > timedelta(seconds=settings.SIWE_NONCE_TTL_S):
        raise SignInError(
            "expired",
            f"The nonce is older than {settings.SIWE_NONCE_TTL_S} s; ask for a new one.",
        )
    if not nonce.consume():
        raise SignInError("nonce_reused", "This message was already used to sign in.", 409)
    return message


def contributor_for_sign_in(address: str) -> Contributor:
    """The contributor who owns `address`; a first sign-in creates them with it as payout.

    A wallet unlinked from its account is free: signing in with it again makes a new
    contributor, never a way back into the account that let it go.
    """
    for _ in range(3):
        wallet = Wallet.objects.select_related("contributor").filter(address=address).first()
        if wallet is not None:
            return wallet.contributor
        # The username is only a label for admins. The address is the natural one, but the
        # account that first signed in with this wallet keeps that name after unlinking it.
        username = address
        if Contributor.objects.filter(username=username).exists():
            username = f"{address}-{secrets.token_hex(4)}"
        try:
            with transaction.atomic():
                contributor = Contributor(username=username)
                contributor.set_unusable_password()
                contributor.save()
                Wallet.objects.create(contributor=contributor, address=address, is_payout=True)
                return contributor
        except IntegrityError:
            # Either another first sign-in of this wallet won the race (the loop finds its
            # wallet), or the username is taken (the loop tries another).
            continue
    raise RuntimeError(f"no contributor could be created for {address}")


def link_wallet(contributor: Contributor, address: str) -> tuple[Wallet, bool]:
    """Add a wallet proven by a signature; (wallet, created). Another's wallet is refused."""
    existing = Wallet.objects.filter(address=address).first()
    if existing is not None:
        if existing.contributor_id != contributor.pk:
            raise SignInError("wallet_taken", "This wallet is linked to another contributor.", 409)
        return existing, False
    try:
        with transaction.atomic():
            is_first = not contributor.wallets.exists()
            return Wallet.objects.create(
                contributor=contributor, address=address, is_payout=is_first
            ), True
    except IntegrityError:
        return link_wallet(contributor, address)


@transaction.atomic
def unlink_wallet(contributor: Contributor, address: str) -> None:
    wallets = list(Wallet.objects.select_for_update().filter(contributor=contributor))
    target = next((w for w in wallets if w.address == address), None)
    if target is None:
        raise SignInError("wallet_not_found", "You have no wallet with this address.", 404)
    if len(wallets) == 1:
        raise SignInError(
            "last_wallet", "This is your only wallet; link another before removing it.", 409
        )
    target.delete()
    if target.is_payout:
        # Payouts never go nowhere: the oldest remaining wallet takes over.
        next(w for w in wallets if w.pk != target.pk).make_payout()
