"""Reading JSON request bodies with a size cap and a nesting cap, answering in the API's error
shape.

Python's `json` parses arrays and objects by recursion in C. Importing eth-account (py_ecc)
raises the recursion limit to 100,000, and 100,000 `[` then overflow the C stack: the worker
dies with SIGSEGV instead of raising RecursionError. `portal.lib.recursion` lowers the limit
again, and every body is measured here before it is parsed at all: nothing the API accepts
nests deeper than a few levels, so MAX_JSON_DEPTH refuses deep bodies long before any limit.
"""

import json
import re

import msgspec

from portal.lib.errors import ApiError

# Arrays and objects inside one another; the deepest body the API takes (telemetry) has 3.
MAX_JSON_DEPTH = 32

DEPTH_DETAIL = (
    f"The body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels "
    "(or leaves some of them open)."
)

# JSON may escape UTF-16 surrogates; Python keeps a lone one, which no database can store.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

# Every byte but `"`, brackets and braces; braces become brackets, as only nesting counts.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACES_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")
_TOO_DEEP_RUN = b"[" * (MAX_JSON_DEPTH + 1)


def nests_too_deep(utf8: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text (UTF-8) opens arrays or objects more than `limit` deep outside
    strings, or leaves some open; linear time in C, without recursion, never raises.

    Valid JSON within the limit is never refused. For text that is not JSON, what comes after
    the first error is never parsed, so counting it too can only refuse more, never less.
    """
    if utf8.count(b"[") + utf8.count(b"{") <= limit:
        return False
    # Inside strings, `\\` and `\"` are the escapes that could hide or fake a closing quote.
    # (In UTF-8 these ASCII bytes never occur inside a multi-byte character.)
    unescaped = utf8.replace(b"\\\\", b"").replace(b'\\"', b"")
    # What is left is brackets and the quotes around strings; a string without brackets in
    # it leaves `""`, and brackets inside strings lie between an odd quote and the next one.
    structure = unescaped.translate(_BRACES_AS_BRACKETS, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    # Each pass empties the innermost arrays and objects: one level of nesting a pass.
    for _ in range(limit):
        if not structure or _TOO_DEEP_RUN in structure:
            break
        shallower = structure.replace(b"[]", b"")
        if len(shallower) == len(structure):
            break
        structure = shallower
    return bool(structure)


def loads(raw: bytes, encoding: str | None = None, **options):
    """The JSON value of a body, or ApiError 400 `invalid_json`, refused unparsed when nested
    deeper than MAX_JSON_DEPTH. Without `encoding`, detected as `json.loads` does (RFC 8259)."""
    try:
        text = raw.decode(encoding or json.detect_encoding(raw), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if nests_too_deep(text.encode("utf-8", "surrogatepass")):
        raise ApiError(400, "invalid_json", DEPTH_DETAIL)
    try:
        return json.loads(text, **options)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None


class BoundedJSONDecoder(json.JSONDecoder):
    """For Django form fields that take JSON (`forms.JSONField(decoder=…)`): a body nested
    too deep is "not valid JSON" there, a form error rather than a crash."""

    def decode(self, s, *args, **kwargs):
        if nests_too_deep(s.encode("utf-8", "surrogatepass")):
            raise json.JSONDecodeError(DEPTH_DETAIL, s, 0)
        return super().decode(s, *args, **kwargs)


def read_json_object(request, max_bytes: int, too_large_code: str = "body_too_large") -> dict:
    """The body as a JSON object, or an ApiError: 413 past `max_bytes`, 400 if not an object."""
    return parse_object(read_capped(request, max_bytes, too_large_code))


def read_capped(request, max_bytes: int, too_large_code: str = "body_too_large") -> bytes:
    """The raw body, or ApiError 413 past `max_bytes` (declared or sent)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    try:
        declared_len = int(declared)
    except ValueError:
        raise ApiError(400, "invalid_request", "Content-Length is not a number.") from None
    if declared_len > max_bytes:
        raise ApiError(413, too_large_code, f"The body is larger than {max_bytes} bytes.")
    # Read from Django's request (DRF wraps it) with a cap, so a body without Content-Length
    # cannot make us buffer more than we accept.
    django_request = getattr(request, "_request", request)
    raw = django_request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, too_large_code, f"The body is larger than {max_bytes} bytes.")
    return raw


def parse_object(raw: bytes) -> dict:
    """A raw body as a JSON object, or ApiError 400 `invalid_json` (not JSON, nested too deep,
    a NUL or a lone surrogate in it, not an object)."""
    body = loads(raw)
    if b"\\u0000" in raw:
        # PostgreSQL text cannot hold NUL; refusing it here keeps both databases alike.
        raise ApiError(400, "invalid_json", "The body holds a NUL character (\\u0000).")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise ApiError(
            400, "invalid_json", "The body holds a lone UTF-16 surrogate (\\ud800-\\udfff)."
        )
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


def decode_typed(raw: bytes, decoder: msgspec.json.Decoder):
    """The body decoded and type-checked in one pass by a msgspec `decoder` of an object type,
    or None: then the caller reads it with `parse_object` and checks it field by field.

    Only bodies that `parse_object` would take as the very same values get here: strict UTF-8
    (checked here, as msgspec skips the fields it does not know without looking at their
    bytes; a BOM or another encoding it refuses itself), no NUL and no surrogate escape at
    all, nested within MAX_JSON_DEPTH. msgspec refuses what `json` would read as NaN, an
    infinity or a float out of range, and checks a duplicated key at each occurrence (the last
    one wins, as in `json`); whatever it refuses goes the general way, which gives its exact
    answer. So a typed decode never changes an answer, it only saves the work.
    """
    if b"\\u0000" in raw or _SURROGATE_ESCAPE.search(raw) or nests_too_deep(raw):
        return None
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return decoder.decode(raw)
    except msgspec.MsgspecError:
        return None


def _has_lone_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def require_strings(body: dict, *names: str) -> list[str]:
    """Each named field as a non-empty string, or a 400 listing every field that is not."""
    errors = [
        {"field": name, "error": "required" if name not in body else "must be a non-empty string"}
        for name in names
        if not isinstance(body.get(name), str) or not body.get(name)
    ]
    if errors:
        raise ApiError(400, "validation_failed", "Some fields are missing or invalid.", errors)
    return [body[name] for name in names]
