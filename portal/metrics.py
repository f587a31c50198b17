"""What the portal tells Prometheus (README "Metrics and Grafana"): one module, so that every
metric's name, labels and meaning are read in one place.

Two kinds:

- Events counted where they happen, by the small hooks below (`request_done`,
  `batch_accepted`, `batches_stored`, `epoch_settled`, `challenge_decided`). Under gunicorn
  and Celery's prefork pool every process counts its own; with `PROMETHEUS_MULTIPROC_DIR` set
  (before the process starts) prometheus-client keeps them in files there, and `/metrics` adds
  up every process that shares the folder. Without it, a process reports only itself.
- States read from the database when Prometheus scrapes (`DatabaseCollector`): drain lag,
  pending and failed batches, rollup backlog, the last settled epoch's held-out GPUs, claims by
  status. Indexed queries, so a scrape costs a few milliseconds and a request nothing.

Labels are bounded sets only: a URL route pattern, never a path; a method from a fixed list;
a status class; a reason or status from the models' choices. An attacker who requests a
million random paths adds no series.
"""

import logging
import os
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

# No `*_created` series beside each counter and histogram: Prometheus ignores them here.
disable_created_metrics()

# The label of requests that matched no URL pattern (404s, probes, static files).
UNMATCHED_ROUTE = "unmatched"
STATIC_ROUTE = "static"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "omnitensor_http_requests",
    "HTTP requests answered, by URL route pattern, method and status class.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "omnitensor_http_request_duration_seconds",
    "Time from the first middleware to the response, by URL route pattern and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TELEMETRY_BATCHES_ACCEPTED = Counter(
    "omnitensor_telemetry_batches_accepted",
    "Telemetry batches the agent API accepted and stored for a drain (replays not counted).",
)
TELEMETRY_BATCHES_STORED = Counter(
    "omnitensor_telemetry_batches_stored",
    "Telemetry batches whose samples a drain stored (committed).",
)
TELEMETRY_SAMPLES_STORED = Counter(
    "omnitensor_telemetry_samples_stored",
    "Samples stored by drains (committed; copies of a stored sample included).",
)
SETTLEMENT_DURATION = Histogram(
    "omnitensor_settlement_duration_seconds",
    "Time to settle one epoch (usage, payouts and the ledger's transaction).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
CHALLENGES_DECIDED = Counter(
    "omnitensor_verification_challenges_decided",
    "Proof-of-GPU challenges decided, by result (passed, failed) and failure reason.",
    ["result", "reason"],
)


# --- hooks: called where the event happens ------------------------------------------------


def route_of(request) -> str:
    """The label of a request: its URL pattern (`api/v1/gpus/<int:pk>`), never its path."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.route or match.view_name or UNMATCHED_ROUTE
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return STATIC_ROUTE
    return UNMATCHED_ROUTE


def request_done(request, status_code: int, seconds: float) -> None:
    route = route_of(request)
    method = request.method if request.method in _METHODS else "other"
    HTTP_REQUESTS.labels(route, method, f"{status_code // 100}xx").inc()
    HTTP_LATENCY.labels(route, method).observe(seconds)


def batch_accepted() -> None:
    TELEMETRY_BATCHES_ACCEPTED.inc()


def batches_stored(batches: int, samples: int) -> None:
    if batches:
        TELEMETRY_BATCHES_STORED.inc(batches)
        TELEMETRY_SAMPLES_STORED.inc(samples)


def epoch_settled(seconds: float) -> None:
    SETTLEMENT_DURATION.observe(seconds)


def challenge_decided(status: str, reason: str) -> None:
    CHALLENGES_DECIDED.labels(status, reason or "").inc()


class RequestMetricsMiddleware:
    """Counts and times every request; first in both middleware lists (portal/wsgi.py), so
    that the time is the whole stack's."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        request_done(request, response.status_code, time.perf_counter() - started)
        return response


# --- read at scrape time ----------------------------------------------------------------------

# Claims have no index on status alone: their counts are read at most this often per process.
CLAIM_COUNTS_MAX_AGE_S = 60


class DatabaseCollector:
    """Gauges read from the database at each scrape. A database that does not answer gives
    `omnitensor_metrics_database_up 0` and none of them, never a failed scrape."""

    def __init__(self) -> None:
        self._claims: tuple[float, dict[str, int]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            families = [*self._telemetry(), *self._held_out(), self._claim_states()]
        except DatabaseError:
            log.warning("metrics: the database did not answer", exc_info=True)
            yield _gauge("omnitensor_metrics_database_up", "The scrape could read it.", 0)
            return
        yield _gauge("omnitensor_metrics_database_up", "The scrape could read it.", 1)
        yield from families

    def _telemetry(self) -> list[GaugeMetricFamily]:
        from contributors.models import RollupDue, TelemetryBatch

        rows = (  # served by the (status, received_at) index
            TelemetryBatch.objects.filter(
                status__in=[TelemetryBatch.Status.PENDING, TelemetryBatch.Status.FAILED]
            )
            .values("status")
            .annotate(n=Count("pk"), oldest=Min("received_at"))
            .order_by()
        )
        by_status = {row["status"]: row for row in rows}
        counts = {status: row["n"] for status, row in by_status.items()}
        pending = by_status.get(TelemetryBatch.Status.PENDING)
        lag = (timezone.now() - pending["oldest"]).total_seconds() if pending else 0.0
        return [
            _gauge(
                "omnitensor_telemetry_drain_lag_seconds",
                "Age of the oldest pending telemetry batch (0 when none waits).",
                max(lag, 0.0),
            ),
            _gauge(
                "omnitensor_telemetry_pending_batches",
                "Telemetry batches accepted and not yet stored by a drain.",
                counts.get(TelemetryBatch.Status.PENDING, 0),
            ),
            _gauge(
                "omnitensor_telemetry_failed_batches",
                "Telemetry batches that failed INGEST_MAX_ATTEMPTS times and wait for an admin.",
                counts.get(TelemetryBatch.Status.FAILED, 0),
            ),
            _gauge(
                "omnitensor_rollup_backlog",
                "GPU spans whose rollups wait to be redone (RollupDue rows).",
                RollupDue.objects.count(),
            ),
        ]

    def _held_out(self) -> list[GaugeMetricFamily]:
        from rewards.models import Epoch, HeldOut

        epoch = (
            Epoch.objects.filter(status=Epoch.Status.SETTLED)
            .order_by("-start")
            .values("pk", "end")
            .first()
        )
        reasons = GaugeMetricFamily(
            "omnitensor_last_epoch_held_out",
            "GPUs held out of the last settled epoch, by reason.",
            labels=["reason"],
        )
        if epoch is None:
            return [reasons]
        counts = dict(
            HeldOut.objects.filter(epoch_id=epoch["pk"])
            .values_list("reason")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for reason in HeldOut.Reason.values:
            reasons.add_metric([reason], counts.get(reason, 0))
        end = _gauge(
            "omnitensor_last_epoch_end_timestamp_seconds",
            "When the last settled epoch ended (Unix time).",
            epoch["end"].timestamp(),
        )
        return [reasons, end]

    def _claim_states(self) -> GaugeMetricFamily:
        from rewards.models import Claim

        now = time.monotonic()
        if self._claims is None or now - self._claims[0] > CLAIM_COUNTS_MAX_AGE_S:
            counts = dict(Claim.objects.values_list("status").annotate(n=Count("pk")).order_by())
            self._claims = (now, counts)
        family = GaugeMetricFamily(
            "omnitensor_claims",
            f"Claim vouchers by status (read at most every {CLAIM_COUNTS_MAX_AGE_S} s).",
            labels=["status"],
        )
        for status in Claim.Status.values:
            family.add_metric([status], self._claims[1].get(status, 0))
        return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


_database = DatabaseCollector()


class _Scrape:
    """What one scrape reports: this process's metrics (or, in multiprocess mode, those of
    every process sharing PROMETHEUS_MULTIPROC_DIR), then the database's gauges."""

    def collect(self):
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            yield from MultiProcessCollector(None).collect()
        else:
            yield from REGISTRY.collect()
        yield from _database.collect()


def exposition(accept: str) -> tuple[bytes, str]:
    """The metrics in the format `accept` asks for (Prometheus text by default), and its
    content type."""
    encode, content_type = choose_encoder(accept)
    return encode(_Scrape()), content_type
