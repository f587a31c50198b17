"""contributors.siwe against the official EIP-4361 test vectors, plus checks with our own key.

The vectors (spruceid/siwe test/*.json) are kept unchanged in tests/data/third-party/siwe (source,
commit and license in its README.md). eip1271.json is left out: contract wallets need a mainnet RPC.
"""

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given
from hypothesis import strategies as st

from contributors import siwe
from contributors.siwe import SiweError, SiweMessage, build_message, parse_message, verify

VECTORS = Path(__file__).resolve().parent / "data" / "third-party" / "siwe"

# Vector keys are camelCase (the JS library's); ours are the dataclass's snake_case.
FIELD_NAMES = {
    "scheme": "scheme",
    "domain": "domain",
    "address": "address",
    "statement": "statement",
    "uri": "uri",
    "version": "version",
    "chainId": "chain_id",
    "nonce": "nonce",
    "issuedAt": "issued_at",
    "expirationTime": "expiration_time",
    "notBefore": "not_before",
    "requestId": "request_id",
    "resources": "resources",
}
# Keys in verification vectors that say how to verify rather than what was signed.
VERIFY_KEYS = {"signature", "time", "domainBinding", "matchNonce"}

# The negative verification vectors name their failure; these are the codes those names mean.
EXPECTED_CODES = {
    "expired message": "expired",
    "domain binding": "domain_mismatch",
    "custom time": "expired",
    "custom nonce": "nonce_mismatch",
    "malformed signature": "bad_signature",
    "wrong signature": "bad_signature",
    "not yet valid": "not_yet_valid",
    "invalid issuedAt": "malformed_message",
    "invalid notBefore": "malformed_message",
    "invalid expirationTime": "malformed_message",
}


def _cases(name: str) -> list[Any]:
    # Part of the repository: a missing file fails collection, it is never a reason to skip.
    path = VECTORS / name
    return [pytest.param(key, value, id=key) for key, value in json.loads(path.read_text()).items()]


def _fields(vector: dict[str, Any]) -> dict[str, Any]:
    unknown = set(vector) - set(FIELD_NAMES) - VERIFY_KEYS
    assert not unknown, f"vector has keys this test does not map: {unknown}"
    return {FIELD_NAMES[k]: v for k, v in vector.items() if k in FIELD_NAMES}


def _time(vector: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(vector["time"]) if "time" in vector else None


@pytest.mark.parametrize(("name", "case"), _cases("parsing_positive.json"))
def test_parsing_positive(name: str, case: dict[str, Any]) -> None:
    message = parse_message(case["message"])
    expected = _fields(case["fields"])
    for field, value in expected.items():
        got = getattr(message, field)
        assert (list(got) if field == "resources" else got) == value, field
    for field in set(FIELD_NAMES.values()) - set(expected):
        assert getattr(message, field) in (None, ()), f"{field} should be absent"
    assert message.to_text() == case["message"]
    assert build_message(expected) == case["message"]


@pytest.mark.parametrize(("name", "text"), _cases("parsing_negative.json"))
def test_parsing_negative(name: str, text: str) -> None:
    with pytest.raises(SiweError) as caught:
        parse_message(text)
    assert caught.value.code == "malformed_message"
    assert caught.value.detail


@pytest.mark.parametrize(("name", "case"), _cases("parsing_negative_objects.json"))
def test_parsing_negative_objects(name: str, case: dict[str, Any]) -> None:
    with pytest.raises(SiweError) as caught:
        build_message(_fields(case))
    assert caught.value.code == "malformed_message"


@pytest.mark.parametrize(("name", "case"), _cases("verification_positive.json"))
def test_verification_positive(name: str, case: dict[str, Any]) -> None:
    message = SiweMessage(**_fields(case))
    checks = {"domain": case["domain"], "nonce": case["nonce"], "chain_id": case["chainId"]}
    verified = verify(message, case["signature"], now=_time(case), **checks)
    assert verified == message
    # The same, from the text a wallet would have sent.
    assert verify(message.to_text(), case["signature"], now=_time(case), **checks) == message


@pytest.mark.parametrize(("name", "case"), _cases("verification_negative.json"))
def test_verification_negative(name: str, case: dict[str, Any]) -> None:
    with pytest.raises(SiweError) as caught:
        message = SiweMessage(**_fields(case))
        verify(
            message,
            case["signature"],
            domain=case.get("domainBinding"),
            nonce=case.get("matchNonce"),
            now=_time(case),
        )
    assert caught.value.code == EXPECTED_CODES[name]


# --- our own key -------------------------------------------------------------------------------

KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
OTHER_KEY = "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _message(**overrides: Any) -> SiweMessage:
    values: dict[str, Any] = {
        "domain": "portal.example",
        "address": Account.from_key(KEY).address,
        "statement": "Sign in to the OmniTensor contributor portal.",
        "uri": "https://portal.example/login",
        "version": "1",
        "chain_id": 1,
        "nonce": "a1B2c3D4e5F6",
        "issued_at": "2025-06-01T11:59:00Z",
        "expiration_time": "2025-06-01T12:10:00.000Z",
    }
    return SiweMessage(**(values | overrides))


def _sign(message: SiweMessage, key: str = KEY) -> str:
    signed = Account.sign_message(encode_defunct(text=message.to_text()), private_key=key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def _verify(message: SiweMessage, signature: str, **overrides: Any) -> SiweMessage:
    checks: dict[str, Any] = {
        "domain": "portal.example",
        "nonce": "a1B2c3D4e5F6",
        "chain_id": 1,
        "now": NOW,
        "uri_origin": "https://portal.example",
    }
    return verify(message, signature, **(checks | overrides))


def _code(message: SiweMessage, signature: str, **overrides: Any) -> str:
    with pytest.raises(SiweError) as caught:
        _verify(message, signature, **overrides)
    return caught.value.code


def test_own_key_verifies() -> None:
    message = _message()
    assert _verify(message, _sign(message)) == message
    assert _verify(message, _sign(message), uri_origin="https://PORTAL.example:443/") == message
    assert message.issued_at_dt == datetime(2025, 6, 1, 11, 59, tzinfo=UTC)


def test_signed_by_another_key() -> None:
    message = _message()
    assert _code(message, _sign(message, OTHER_KEY)) == "bad_signature"


def test_signature_over_other_text() -> None:
    assert _code(_message(), _sign(_message(nonce="zzzzzzzz"))) == "bad_signature"


def test_domain_mismatch() -> None:
    message = _message(domain="evil.example")
    assert _code(message, _sign(message)) == "domain_mismatch"


def test_scheme_mismatch_is_a_domain_mismatch() -> None:
    message = _message(scheme="http")
    assert _code(message, _sign(message)) == "domain_mismatch"


def test_chain_mismatch() -> None:
    message = _message(chain_id=5)
    assert _code(message, _sign(message)) == "chain_mismatch"


def test_nonce_mismatch() -> None:
    message = _message()
    assert _code(message, _sign(message), nonce="f6E5d4C3b2A1") == "nonce_mismatch"


def test_expired() -> None:
    message = _message()
    assert _code(message, _sign(message), now=NOW + timedelta(minutes=10)) == "expired"


def test_not_yet_valid() -> None:
    message = _message(not_before="2025-06-01T14:00:00+02:00")
    signature = _sign(message)
    assert _code(message, signature, now=NOW - timedelta(seconds=1)) == "not_yet_valid"
    assert _verify(message, signature) == message


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/login",
        "http://portal.example/login",
        "https://portal.example:8443/login",
        "https://portal.example.evil.example/",
        "urn:portal.example",
    ],
)
def test_uri_mismatch(uri: str) -> None:
    message = _message(uri=uri)
    assert _code(message, _sign(message)) == "uri_mismatch"


def test_lowercase_address_is_malformed() -> None:
    text = _message().to_text()
    address = Account.from_key(KEY).address
    with pytest.raises(SiweError) as caught:
        parse_message(text.replace(address, address.lower()))
    assert caught.value.code == "malformed_message"
    with pytest.raises(SiweError) as caught:
        _verify(text.replace(address, address.lower()), _sign(_message()))
    assert caught.value.code == "malformed_message"


@pytest.mark.parametrize(
    "signature",
    ["", "0x", "0x1234", "0x" + "zz" * 65, "0x" + "00" * 65, "ab" * 65],
)
def test_garbage_signature(signature: str) -> None:
    assert _code(_message(), signature) == "bad_signature"


@pytest.mark.parametrize(
    "text",
    [
        "",
        _message().to_text() + "\n",
        _message().to_text().replace("\n", "\r\n"),
        _message().to_text().replace("Chain ID: 1", "Chain ID: 01"),
        _message().to_text() + "\nResources:",
        _message().to_text().replace("Z\n", "\n", 1),
        _message().to_text().replace("Nonce: a1B2c3D4e5F6", "Nonce: a1B2c3D4-5F6"),
        _message().to_text().replace("portal.\n", "portalé.\n"),
    ],
)
def test_more_malformed(text: str) -> None:
    with pytest.raises(SiweError) as caught:
        parse_message(text)
    assert caught.value.code == "malformed_message"


def test_naive_now_is_refused() -> None:
    message = _message()
    with pytest.raises(ValueError, match="timezone-aware"):
        _verify(message, _sign(message), now=datetime(2025, 6, 1, 12, 0))


_ALNUM = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8)


@given(
    statement=st.none() | st.from_regex(r"[A-Za-z0-9 .,:;!?'()/#@~_=+*&$-]*", fullmatch=True),
    nonce=_ALNUM,
    chain_id=st.integers(min_value=0, max_value=2**64),
    request_id=st.none() | st.from_regex(r"[A-Za-z0-9._~:@-]{0,12}", fullmatch=True),
    resources=st.lists(st.sampled_from(["https://a.example/x?y=1#z", "ipfs://Qm1", "urn:a:b"])),
)
def test_round_trip(
    statement: str | None, nonce: str, chain_id: int, request_id: str | None, resources: list[str]
) -> None:
    message = _message(
        statement=statement,
        nonce=nonce,
        chain_id=chain_id,
        request_id=request_id,
        resources=resources,
    )
    assert parse_message(message.to_text()) == message


def test_module_imports_no_django() -> None:
    modules = sorted(Path(siwe.__file__).parent.glob("*.py"))
    assert len(modules) > 1  # the package, not just its __init__
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name.split(".")[0] == "django" for name in imported), module.name
