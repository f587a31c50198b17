"""The portal's Agent API (v1) over stdlib ``urllib``: one request, one ``Response``.

Non-2xx answers are returned, not raised, so that callers decide per status; only a
failure to get any answer (DNS, refused, reset, timeout) raises ``NetworkError``.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from omnitensor_agent import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"omnitensor-agent/{__version__}"
TIMEOUT_S = 30.0


class NetworkError(OSError):
    """No HTTP answer at all: worth retrying later."""


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> str:
        """The API's ``{"error": code, "detail": text}`` as one line for messages."""
        if isinstance(self.body, dict) and "error" in self.body:
            detail = self.body.get("detail")
            return f"{self.body['error']}: {detail}" if detail else str(self.body["error"])
        return str(self.body)[:200] if self.body else f"HTTP {self.status}"


def check_portal_url(portal: str) -> str:
    parts = urllib.parse.urlsplit(portal)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"portal URL must be http(s)://host[:port], got {portal!r}")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        # Allowed for LAN demos, but the node token would cross the network in clear text.
        log.warning("portal %s is plain http: the node token is sent unencrypted", portal)
    return portal.rstrip("/")


class PortalClient:
    def __init__(self, portal: str, token: str | None = None, timeout_s: float = TIMEOUT_S):
        self.portal = check_portal_url(portal)
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, payload: Any = None) -> Response:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.portal + path, data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", USER_AGENT)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            # The scheme was checked in check_portal_url: only http(s) reaches urlopen.
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                return Response(resp.status, _decode(resp.read()), dict(resp.headers.items()))
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, _decode(exc.read()), dict(exc.headers.items()))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NetworkError(f"{method} {self.portal}{path}: {reason}") from exc

    def enroll(self, code: str, hostname: str, gpus: list[dict[str, Any]]) -> Response:
        return self.request(
            "POST",
            "/api/v1/agent/enroll",
            {
                "enrollment_code": code,
                "hostname": hostname,
                "agent_version": __version__,
                "gpus": gpus,
            },
        )

    def config(self) -> Response:
        return self.request("GET", "/api/v1/agent/config")

    def telemetry(self, body: dict[str, Any]) -> Response:
        return self.request("POST", "/api/v1/agent/telemetry", body)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")
