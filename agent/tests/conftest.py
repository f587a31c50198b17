"""Shared fixtures for the node agent's tests.

The agent is its own package under agent/; putting it on sys.path lets these tests run from
a bare checkout too (without ``pip install -e agent/``). Parser tests read the real captures
in ../shared/data beside the checkout, never copies inside the repo.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agent"))

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real GPU captures not found at {DATA} (../shared/data beside the checkout)")
    return DATA


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakePortal:
    """A real HTTP server on 127.0.0.1 that speaks just enough of the Agent API (v1).

    ``telemetry_script`` holds (status, headers, body) answers used in order; once it is
    empty every telemetry post gets 202.
    """

    url: str = ""
    token: str = "node-token-123"
    requests: list[Recorded] = field(default_factory=list)
    telemetry_script: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    config_body: dict[str, Any] = field(
        default_factory=lambda: {"node_id": "n-1", "sample_interval_s": 1, "report_interval_s": 1}
    )
    enroll_status: int = 201

    def telemetry(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/api/v1/agent/telemetry"]

    def answer(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        if req.path == "/api/v1/agent/enroll" and req.method == "POST":
            if self.enroll_status != 201:
                return self.enroll_status, {}, {"error": "invalid_enrollment_code", "detail": "no"}
            return (
                201,
                {},
                {
                    "node_id": "n-1",
                    "node_token": self.token,
                    "sample_interval_s": 10,
                    "report_interval_s": 30,
                },
            )
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, {"error": "invalid_token", "detail": "unknown token"}
        if req.path == "/api/v1/agent/config" and req.method == "GET":
            return 200, {}, self.config_body
        if req.path == "/api/v1/agent/telemetry" and req.method == "POST":
            if self.telemetry_script:
                return self.telemetry_script.pop(0)
            body = req.body or {}
            return (
                202,
                {},
                {
                    "batch_id": body.get("batch_id"),
                    "accepted": len(body.get("samples", [])),
                    "rejected": [],
                },
            )
        return 404, {}, {"error": "not_found", "detail": req.path}


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    state = FakePortal()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            req = Recorded(
                self.command,
                self.path,
                dict(self.headers.items()),
                json.loads(raw) if raw else None,
            )
            state.requests.append(req)
            status, headers, body = state.answer(req)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
