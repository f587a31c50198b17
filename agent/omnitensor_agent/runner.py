"""The ``run`` loop: sample every ``sample_interval_s``, post every ``report_interval_s``.

Sampling runs in the main thread, sending in a background thread, each with its own
SQLite connection to the spool: a slow or unreachable portal (timeouts, backoff) must
never delay sampling, and the spool carries the data across outages and restarts.
Proof-of-GPU challenges, which come in the portal's answers, are solved in a third thread
(``proof.prover``) so that neither sampling nor sending waits for them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from omnitensor_agent.api import NetworkError, PortalClient
from omnitensor_agent.collectors import Collector, CollectorError, CollectorUnavailable
from omnitensor_agent.config import AgentConfig
from omnitensor_agent.proof.backends import Backend
from omnitensor_agent.proof.prover import Prover
from omnitensor_agent.readings import GpuReading
from omnitensor_agent.sender import AuthError, Sender
from omnitensor_agent.spool import Spool

log = logging.getLogger(__name__)

CONFIG_REFRESH_S = 300.0
# The GPU inventory is sent again at least this often even when unchanged.
INVENTORY_EVERY_S = 600
MIN_INTERVAL_S = 1.0
WARM_UP_WAIT_S = 120.0


def readings_to_samples(readings: list[GpuReading]) -> list[dict[str, Any]]:
    samples = []
    for reading in readings:
        if reading.reportable:
            samples.append(reading.to_sample())
        else:
            log.debug("not reporting %s: no memory reading", reading.uuid)
    return samples


def inventory(readings: list[GpuReading]) -> list[dict[str, Any]]:
    return [r.to_gpu() for r in readings if r.memory_total_mib is not None]


class Runner:
    def __init__(
        self,
        config: AgentConfig,
        collector: Collector,
        spool_path: str,
        *,
        duration_s: float | None = None,
        proof_backend: str | Backend = "auto",
        ignore_challenges: bool = False,
    ) -> None:
        self.config = config
        self.collector = collector
        self.spool_path = spool_path
        self.stop = threading.Event()
        self.deadline = None if duration_s is None else time.monotonic() + duration_s
        self.client = PortalClient(config.portal, config.node_token)
        self.gpus: list[dict[str, Any]] = []
        self.auth_error: AuthError | None = None
        self._lock = threading.Lock()
        # Simulated GPUs are proved on the CPU: their uuids name no real device.
        self.proof_backend = "numpy" if collector.name == "simulate" else proof_backend
        self.ignore_challenges = ignore_challenges
        self.prover: Prover | None = None

    def _offer(self, body: Any, replayed: bool = False) -> None:
        if self.prover is None:
            return
        try:
            # A fresh answer lists every open challenge; a replayed one may be stale.
            self.prover.offer_answer(body, complete=not replayed)
        except Exception:  # a strange answer must never stop sending or sampling
            log.exception("could not read the challenges in the portal's answer")

    # -- portal config ------------------------------------------------------------------
    def refresh_config(self) -> None:
        """Adopt the portal's intervals; keep the current ones if it cannot be reached."""
        try:
            resp = self.client.config()
        except NetworkError as exc:
            log.warning("cannot fetch agent config, keeping current intervals: %s", exc)
            return
        if resp.status in (401, 403):
            raise AuthError(resp.status, resp.error)
        if resp.status != 200 or not isinstance(resp.body, dict):
            log.warning("agent config request answered %s: %s", resp.status, resp.error)
            return
        self._offer(resp.body)
        for key in ("sample_interval_s", "report_interval_s"):
            value = resp.body.get(key)
            if isinstance(value, int | float) and value >= MIN_INTERVAL_S:
                setattr(self.config, key, value)
        log.info(
            "intervals: sample every %ss, report every %ss",
            self.config.sample_interval_s,
            self.config.report_interval_s,
        )

    # -- threads -------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        with Spool(self.spool_path) as spool:
            sender = Sender(self.client, spool, sleep=self.stop.wait, on_answer=self._offer)
            sent_gpus, sent_at = None, float("-inf")
            try:
                while not self.stop.is_set():
                    with self._lock:
                        gpus = list(self.gpus)
                    # The inventory rides along only when it changed or now and then: the
                    # portal keeps it, and most reports are samples only.
                    due = gpus != sent_gpus or time.monotonic() - sent_at >= INVENTORY_EVERY_S
                    sent = sender.flush(gpus if due else None, should_stop=self.stop.is_set)
                    if due and sent:
                        sent_gpus, sent_at = gpus, time.monotonic()
                    self.stop.wait(self.config.report_interval_s)
            except AuthError as exc:
                self.auth_error = exc
                self.stop.set()

    def _done(self) -> bool:
        return self.stop.is_set() or (
            self.deadline is not None and time.monotonic() >= self.deadline
        )

    def run(self) -> int:
        if not self.ignore_challenges:
            # Made here, not in __init__: callers may replace ``stop`` in between.
            self.prover = Prover(self.client, self.stop, self.proof_backend)
            self.prover.start()
            # The portal times a challenge from its delivery: none is asked for (the config
            # read below may carry one) before the backend has loaded and warmed up.
            if not self.prover.ready.wait(WARM_UP_WAIT_S):
                log.warning("the proof backend is still warming up; going on without it")
        else:
            log.warning("ignoring proof-of-GPU challenges: this node will fail them")
        try:
            self.refresh_config()
        except AuthError:
            self.stop.set()
            if self.prover is not None:
                self.prover.join(timeout=10)
            raise
        sender_thread = threading.Thread(target=self._sender_loop, name="sender", daemon=True)
        next_refresh = time.monotonic() + CONFIG_REFRESH_S
        with Spool(self.spool_path) as spool:
            sender_thread.start()
            next_sample = time.monotonic()
            while not self._done():
                self._sample(spool)
                # Fixed cadence (not "interval after the previous sample ended"), so a slow
                # nvidia-smi does not make samples drift apart and leave coverage gaps.
                next_sample += self.config.sample_interval_s
                now = time.monotonic()
                if next_sample < now:
                    next_sample = now
                if now >= next_refresh:
                    next_refresh = now + CONFIG_REFRESH_S
                    try:
                        self.refresh_config()
                    except AuthError as exc:
                        self.auth_error = exc
                        break
                wait = next_sample - now
                if self.deadline is not None:
                    wait = min(wait, max(0.0, self.deadline - now))
                self.stop.wait(wait)
        self.stop.set()
        sender_thread.join(timeout=60)
        if self.prover is not None:
            self.prover.join(timeout=10)
        if self.auth_error is None:
            self._final_flush()
        if self.auth_error is not None:
            raise self.auth_error
        return 0

    def _sample(self, spool: Spool) -> None:
        try:
            readings = self.collector.collect()
        except (CollectorError, CollectorUnavailable) as exc:
            # Keep running: a driver reload or exporter restart heals on its own, and a
            # gap in coverage is better than a dead agent.
            log.warning("sampling failed this tick: %s", exc)
            return
        with self._lock:
            self.gpus = inventory(readings)
        samples = readings_to_samples(readings)
        if samples:
            spool.add(samples)

    def _final_flush(self) -> None:
        """One short attempt to deliver what is queued before exiting; the rest stays
        spooled for the next start."""
        with Spool(self.spool_path) as spool:
            sender = Sender(self.client, spool, sleep=lambda _s: None)
            try:
                sender.flush(self.gpus, max_attempts=3)
            except AuthError as exc:
                self.auth_error = exc
