"""Answering the portal's challenges (PROOF.md sections 3 and 4) in a thread of its own.

Challenges arrive in the answers to telemetry posts and config reads, repeated in each answer
until committed; the prover takes each id once, solves one challenge at a time on the GPU it
names, commits the root, reveals the rows the portal then asks for, and forgets the solution.
Sampling and sending never wait for it.

| answer to commit / reveal | what happens                                           |
| 200 / 202                 | go on (reveal) / done                                  |
| 409 with ``reveal``       | our own commit, answered before: go on with its rows   |
| other 4xx                 | log the code and drop the challenge: it cannot succeed |
| 5xx, no answer            | retry with a short backoff until the deadline          |
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from omnitensor_agent.api import NetworkError, PortalClient, Response
from omnitensor_agent.proof import spec
from omnitensor_agent.proof.backends import (
    Backend,
    Cancelled,
    DeviceNotFound,
    NumpyBackend,
    make_backend,
)
from omnitensor_agent.proof.solution import Solution, solve

log = logging.getLogger(__name__)

RETRY_BASE_S = 1.0
RETRY_CAP_S = 10.0
# Without a usable deadline (none given, or clocks that disagree), retry this long at most.
RETRY_FALLBACK_S = 120.0
SEEN_MAX = 1000


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class Deadline:
    """A deadline by the portal's clock (``wall``) and by ours (``mono``, monotonic).

    It has passed only when both say so: a wrong system clock must not make the agent give up
    on work it can still deliver in time; the portal decides lateness anyway.
    """

    wall: datetime | None
    mono: float | None

    @classmethod
    def of(cls, wall: datetime | None, within_s: float | None, since: float) -> Deadline:
        if within_s is None and wall is not None:
            within_s = (wall - datetime.now(UTC)).total_seconds()
            within_s = within_s if within_s > 0 else RETRY_FALLBACK_S
        return cls(wall, None if within_s is None else since + within_s)

    def passed(self) -> bool:
        checks = []
        if self.wall is not None:
            checks.append(datetime.now(UTC) > self.wall)
        if self.mono is not None:
            checks.append(time.monotonic() > self.mono)
        return bool(checks) and all(checks)


@dataclass
class Challenge:
    challenge_id: str
    gpu_uuid: str
    seed: bytes
    n: int
    rounds: int
    deadline: Deadline

    @classmethod
    def parse(cls, item: Any, received: float) -> Challenge:
        """Raises ValueError for an item that is not a usable challenge."""
        if not isinstance(item, dict):
            raise ValueError("not an object")
        cid, seed = item.get("challenge_id"), item.get("seed")
        n, rounds = item.get("n"), item.get("rounds")
        if not isinstance(cid, str) or not cid or "/" in cid:
            raise ValueError(f"bad challenge_id {cid!r}")
        if not isinstance(seed, str) or len(seed) != 64:
            raise ValueError("seed is not 64 hex digits")
        if not isinstance(n, int) or not isinstance(rounds, int):
            raise ValueError("n and rounds must be integers")
        spec.check_shape(n, rounds)
        within = item.get("commit_within_s")
        within = float(within) if isinstance(within, int | float) else None
        return cls(
            challenge_id=cid,
            gpu_uuid=str(item.get("gpu_uuid") or ""),
            seed=bytes.fromhex(seed),
            n=n,
            rounds=rounds,
            deadline=Deadline.of(parse_time(item.get("commit_deadline")), within, received),
        )

    @property
    def work_ops(self) -> int:
        return 2 * self.n**3 * self.rounds


class Prover:
    """One thread takes challenges as they come and hands each to a worker thread of its own,
    one challenge at a time per GPU: the portal times every challenge from its delivery and
    challenges all GPUs of a node together, so the GPUs must work at once, not in turn.
    ``offer`` may be called from any thread; ``ready`` is set once the backend warmed up."""

    def __init__(
        self,
        client: PortalClient,
        stop: threading.Event,
        backend: str | Backend = "auto",
        *,
        rng: random.Random | None = None,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        self.client = client
        self.stop = stop
        self.backend = backend
        self.rng = rng or random.Random()
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._pending: OrderedDict[str, Challenge] = OrderedDict()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy: set[str] = set()  # GPUs with a challenge in hand
        self._workers: list[threading.Thread] = []
        self.ready = threading.Event()
        # Outcome per challenge id ("revealed", "commit 409 already_committed", …): for
        # logs and tests.
        self.outcomes: dict[str, str] = {}

    @property
    def working(self) -> set[str]:
        """The GPUs (uuids) with a challenge in hand right now."""
        with self._wake:
            return set(self._busy)

    # -- intake ----------------------------------------------------------------------------
    def offer_answer(self, body: Any, *, complete: bool = True) -> None:
        """Take the ``challenges`` of a portal answer. A ``complete`` answer (a fresh one,
        not a replay) lists every open challenge, so queued ones it lacks were closed."""
        if isinstance(body, dict) and "challenges" in body:
            items = body["challenges"]
            self.offer(items if isinstance(items, list) else [], complete=complete)

    def offer(self, items: list[Any], *, complete: bool = False) -> None:
        received = time.monotonic()
        listed = set()
        with self._wake:
            for item in items:
                cid = item.get("challenge_id") if isinstance(item, dict) else None
                cid = cid if isinstance(cid, str) else None
                listed.add(cid)
                if cid in self._seen:
                    continue
                try:
                    challenge = Challenge.parse(item, received)
                except ValueError as exc:
                    log.error("ignoring a malformed challenge %r: %s", cid, exc)
                    self._remember(str(cid))
                    continue
                self._remember(challenge.challenge_id)
                self._pending[challenge.challenge_id] = challenge
                log.info(
                    "challenge %s for %s: n=%d, %d round(s), commit within %s s",
                    challenge.challenge_id,
                    challenge.gpu_uuid or "?",
                    challenge.n,
                    challenge.rounds,
                    item.get("commit_within_s"),
                )
            if complete:
                for cid in [c for c in self._pending if c not in listed]:
                    log.info("challenge %s was closed before it was started", cid)
                    del self._pending[cid]
                    self.outcomes[cid] = "closed before started"
            self._wake.notify()

    def _remember(self, cid: str) -> None:
        self._seen[cid] = None
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prover", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        for worker in list(self._workers):
            worker.join(timeout)

    def _next(self) -> Challenge | None:
        """The oldest pending challenge for a GPU that has none in hand."""
        with self._wake:
            while not self.stop.is_set():
                for cid, challenge in self._pending.items():
                    if challenge.gpu_uuid not in self._busy:
                        del self._pending[cid]
                        self._busy.add(challenge.gpu_uuid)
                        return challenge
                self._wake.wait(0.5)
            return None

    def _run(self) -> None:
        if isinstance(self.backend, str):
            name = self.backend
            try:
                self.backend = make_backend(name)
            except Exception as exc:
                log.error("proof backend %s unusable (%s); falling back to numpy", name, exc)
                self.backend = NumpyBackend()
            if self.backend.name == "numpy" and name == "auto":
                log.warning(
                    "no CUDA backend (install omnitensor-agent[torch] or [cupy]): challenges "
                    "are solved on the CPU and will likely miss their deadlines"
                )
        try:
            self.backend.warm_up()
        except Exception as exc:  # the challenges will tell; keep the prover alive
            log.warning("proof backend %s: warm-up failed: %s", self.backend.name, exc)
        log.info("proof backend: %s", self.backend.name)
        self.ready.set()
        while (challenge := self._next()) is not None:
            worker = threading.Thread(
                target=self._work,
                args=(challenge,),
                name=f"prover-{challenge.gpu_uuid[-8:]}",
                daemon=True,
            )
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()

    def _work(self, challenge: Challenge) -> None:
        try:
            self.outcomes[challenge.challenge_id] = self.handle(challenge)
        except Exception:  # one broken challenge must not end the prover
            log.exception("challenge %s failed in the agent", challenge.challenge_id)
            self.outcomes[challenge.challenge_id] = "agent error"
        finally:
            with self._wake:
                self._busy.discard(challenge.gpu_uuid)
                self._wake.notify()
        log.info("challenge %s: %s", challenge.challenge_id, self.outcomes[challenge.challenge_id])

    # -- one challenge ---------------------------------------------------------------------
    def handle(self, challenge: Challenge) -> str:
        """Solve, commit, reveal; returns a one-line outcome."""
        assert isinstance(self.backend, Backend)  # noqa: S101  (set in _run or by the caller)
        if challenge.deadline.passed():
            return "skipped: commit deadline passed before it was started"

        def should_stop() -> bool:
            return self.stop.is_set() or challenge.deadline.passed()

        device: str | None = challenge.gpu_uuid or None
        try:
            try:
                solution = self._solve(challenge, device, should_stop)
            except DeviceNotFound as exc:
                log.warning("%s; solving on the default device instead", exc)
                solution = self._solve(challenge, None, should_stop)
        except Cancelled:
            return "stopped" if self.stop.is_set() else "abandoned: commit deadline passed"
        log.info(
            "challenge %s solved on %s in %.2f s (%.1f int8 TOPS), root %s",
            challenge.challenge_id,
            self.backend.name,
            solution.elapsed_s,
            challenge.work_ops / max(solution.elapsed_s, 1e-9) / 1e12,
            solution.root.hex(),
        )
        base = f"/api/v1/agent/challenges/{challenge.challenge_id}"
        resp = self._post(
            f"{base}/commit",
            {"root": solution.root.hex(), "elapsed_s": round(solution.elapsed_s, 6)},
            challenge.deadline,
        )
        body = resp.body if resp is not None and isinstance(resp.body, dict) else {}
        # A commit that arrived but whose answer was lost: the retry hears 409
        # already_committed with the same rows to reveal, and goes on.
        replayed = resp is not None and resp.status == 409 and "reveal" in body
        if resp is None or (resp.status != 200 and not replayed):
            return self._refused("commit", resp)
        try:
            wanted = [(int(x["round"]), int(x["row"])) for x in body.get("reveal") or []]
            rows = [solution.reveal(r, i) for r, i in wanted]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            return f"dropped: the commit answer asks for rows we cannot give ({exc})"
        del solution  # the reveal holds all that is still needed
        due = parse_time(body.get("reveal_deadline"))
        reveal_deadline = Deadline.of(due, None, time.monotonic())
        resp = self._post(f"{base}/reveal", {"rows": rows}, reveal_deadline)
        if resp is None or resp.status not in (200, 202):
            return self._refused("reveal", resp)
        return f"revealed {len(rows)} row(s)"

    def _solve(self, challenge: Challenge, device: str | None, should_stop) -> Solution:
        return solve(
            self.backend,
            challenge.seed,
            challenge.n,
            challenge.rounds,
            device=device,
            should_stop=should_stop,
        )

    @staticmethod
    def _refused(step: str, resp: Response | None) -> str:
        if resp is None:
            return f"dropped: no answer to the {step} before the deadline"
        return f"dropped: {step} refused ({resp.status} {resp.error})"

    def _post(self, path: str, body: dict, deadline: Deadline) -> Response | None:
        """POST until a final answer (2xx or 4xx); None once the deadline has passed (or the
        agent stops) without one. At least one attempt is always made."""
        give_up = None
        if deadline.wall is None and deadline.mono is None:
            give_up = time.monotonic() + RETRY_FALLBACK_S
        failures = 0
        while True:
            try:
                resp = self.client.request("POST", path, body)
                if resp.status < 500:
                    return resp
                why = f"HTTP {resp.status} {resp.error}"
            except NetworkError as exc:
                why = f"network error: {exc}"
            failures += 1
            ceiling = min(self.retry_cap_s, self.retry_base_s * 2 ** (failures - 1))
            delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
            if deadline.passed() or (give_up is not None and time.monotonic() + delay > give_up):
                log.warning("POST %s failed (%s); giving up", path, why)
                return None
            log.warning("POST %s failed (%s); retry %d in %.1f s", path, why, failures, delay)
            if self.stop.wait(delay):
                return None
