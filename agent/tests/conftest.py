"""Shared fixtures for the node agent's tests.

The agent is its own package under agent/; putting it on sys.path lets these tests run from
a bare checkout too (without ``pip install -e agent/``). Parser tests read real NVIDIA tool
outputs kept in the repository, tests/data/third-party (sources and licenses in its README.md).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agent"))

DATA = REPO / "tests" / "data" / "third-party"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    # Part of the repository: missing data is a bug to fix, never a reason to skip.
    if not DATA.is_dir():
        pytest.fail(f"third-party test data missing from the repository: {DATA}")
    return DATA


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakePortal:
    """A real HTTP server on 127.0.0.1 that speaks just enough of the Agent API (v1).

    ``telemetry_script`` holds (status, headers, body) answers used in order; once it is
    empty every telemetry post gets 202.

    Proof of GPU (PROOF.md): ``challenges`` are listed in every telemetry and config answer
    until committed; a commit is answered from ``commit_script`` while it lasts, else with
    200 and the rows of ``reveal_rows`` (default: a few spread over the challenge); a reveal
    from ``reveal_script``, else 202. ``commits`` and ``reveals`` keep the bodies by id.
    """

    url: str = ""
    token: str = "node-token-123"
    requests: list[Recorded] = field(default_factory=list)
    telemetry_script: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    config_body: dict[str, Any] = field(
        default_factory=lambda: {"node_id": "n-1", "sample_interval_s": 1, "report_interval_s": 1}
    )
    enroll_status: int = 201
    challenges: list[dict[str, Any]] = field(default_factory=list)
    commit_script: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    reveal_script: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    reveal_rows: list[tuple[int, int]] | None = None
    commits: dict[str, Any] = field(default_factory=dict)
    commit_answers: dict[str, Any] = field(default_factory=dict)
    lose_commit_answers: int = 0
    reveals: dict[str, Any] = field(default_factory=dict)

    def telemetry(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/api/v1/agent/telemetry"]

    def to(self, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    def open_challenges(self) -> list[dict[str, Any]]:
        return [c for c in self.challenges if c["challenge_id"] not in self.commits]

    def _challenge(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        _, cid, step = req.path.rsplit("/", 2)
        found = [c for c in self.challenges if c["challenge_id"] == cid]
        if not found:
            return 404, {}, {"error": "unknown_challenge", "detail": cid}
        challenge = found[0]
        if step == "commit":
            if self.commit_script:
                return self.commit_script.pop(0)
            if cid in self.commits:
                body = {"error": "already_committed", "detail": cid}
                if req.body.get("root") == self.commits[cid]["root"]:
                    body |= self.commit_answers[cid]  # as the portal does: the same rows
                return 409, {}, body
            self.commits[cid] = req.body
            n, rounds = challenge["n"], challenge["rounds"]
            rows = self.reveal_rows or [(0, 0), (rounds - 1, n - 1), (rounds // 2, n // 2 + 3)]
            due = datetime.now(UTC) + timedelta(seconds=60)
            self.commit_answers[cid] = {
                "reveal": [{"round": r, "row": i} for r, i in rows],
                "reveal_deadline": due.isoformat().replace("+00:00", "Z"),
            }
            if self.lose_commit_answers:
                self.lose_commit_answers -= 1
                return 502, {}, None  # committed, but the answer never reaches the agent
            return 200, {}, self.commit_answers[cid]
        if self.reveal_script:
            return self.reveal_script.pop(0)
        if cid not in self.commits:
            return 409, {}, {"error": "not_committed", "detail": cid}
        self.reveals[cid] = req.body
        return 202, {}, {}

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
            return 200, {}, dict(self.config_body, challenges=self.open_challenges())
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
                    "challenges": self.open_challenges(),
                },
            )
        if req.path.startswith("/api/v1/agent/challenges/") and req.method == "POST":
            return self._challenge(req)
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
