"""Faults degrade, never 500, and cost seconds: the cache, the broker and the workers failing
under a running agent.

- With the cache down (Redis refused, or not answering) the API keeps working: rate limits
  count in each process, the remembered agent is simply not found, and a batch accepted is
  durable in the database whatever the broker does. Nothing answers 500.
- Rate-limit counters are out of reach of the file cache's culling.
- A SIGKILLed worker, or a Redis killed and restarted, stops storing for a few seconds beyond
  what the new process needs to start: dead drains' leases lapse within DRAIN_FLAG_TTL_S, the
  next report (or, with no traffic, beat's sweeper) asks for a new drain, and it does not wait
  behind one message per pending batch. The measured gaps are printed (run with -s).
"""

import shutil
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from contributors.models import TelemetryBatch
from contributors.telemetry import dispatch
from tests.support.brokers import RedisServer, purge_queues, unique_queue
from tests.support.posting import PENDING, PROCESSED, TELEMETRY, EnrolledNode
from tests.support.processes import (
    BeatProcess,
    WebProcess,
    free_port,
    http_request,
    portal_env,
    sigkill_tree,
    start_worker,
    tail,
    wait_until,
)

# Nothing listens on port 1 of the loopback: a connection is refused at once.
DEAD_REDIS = "redis://127.0.0.1:1/0"
# What "a few seconds" means in these tests: beyond the new process's own start-up, storing
# resumes within this (the lease of a dead drain lasts 3 s; the sweeper looks every 5 s).
FEW_SECONDS = 6.0


def needs_redis_server():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: this test kills one of its own")


def start_of_a_window(window_s: int = 60, room_s: float = 20.0) -> None:
    """Wait, if need be, until the current rate-limit window has `room_s` left."""
    left = window_s - time.time() % window_s
    if left < room_s:
        time.sleep(left + 0.1)


def file_cache(folder, max_entries: int = 300) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(folder),
            "OPTIONS": {"MAX_ENTRIES": max_entries},
        }
    }


def dead_redis_cache() -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }


# --- in this process: the cache down, the file cache culling ---------------------------------


@pytest.mark.django_db
def test_telemetry_is_accepted_and_still_limited_while_the_cache_is_down(settings):
    start_of_a_window()
    node = EnrolledNode.enroll(gpus=1)
    settings.TELEMETRY_RATE_PER_MIN = 3
    settings.CACHES = dead_redis_cache()
    start = timezone.now() - timedelta(minutes=5)

    answers = [node.post(node.batch([start + timedelta(seconds=k)])) for k in range(4)]

    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[3].json()["error"] == "throttled"
    assert int(answers[3]["Retry-After"]) >= 1
    # Accepted means durable: pending in the database, for a drain or the sweeper.
    assert node.batches().filter(status=PENDING).count() == 3


@pytest.mark.django_db
def test_telemetry_is_limited_and_remembered_on_a_redis_that_refuses_scripts(
    settings, tmp_path, reaper
):
    """The rate limit and the remembered agent are one Lua script; a Redis whose ACL (or
    renamed commands, or a proxy) refuses scripts gets the same commands as a pipeline, and
    the cache is not taken for down."""
    needs_redis_server()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    reaper.add(redis.stop)
    redis.client().execute_command(
        "ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "&*", "+@all", "-@scripting"
    )
    start_of_a_window()
    node = EnrolledNode.enroll(gpus=1)
    settings.TELEMETRY_RATE_PER_MIN = 3
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://noscripts:pw@127.0.0.1:{redis.port}/1",
        }
    }
    start = timezone.now() - timedelta(minutes=5)

    answers = [node.post(node.batch([start + timedelta(seconds=k)])) for k in range(4)]

    assert [a.status_code for a in answers] == [202, 202, 202, 429], answers[-1].content
    import redis as redis_py

    store = redis_py.Redis(host="127.0.0.1", port=redis.port, db=1, socket_timeout=5)
    keys = {key.decode() for key in store.keys("*")}
    # Counted in Redis (not in this process), and the agent remembered there after its first
    # report: the cache was used, not given up on.
    assert any(":ratelimit:telemetry:" in key for key in keys), keys
    assert any(":agent:" in key for key in keys), keys
    assert node.batches().filter(status=PENDING).count() == 3


@pytest.mark.django_db
def test_sign_in_and_pages_answer_while_the_cache_is_down(settings):
    settings.CACHES = dead_redis_cache()
    client = Client()

    nonce = client.get("/auth/nonce")
    assert nonce.status_code == 200, nonce.content
    assert nonce.json()["nonce"]
    refused = client.post(
        "/auth/verify",
        {"message": "not a message", "signature": "0x00"},
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert 400 <= refused.status_code < 500, refused.content
    assert refused.json()["error"]
    enroll = client.post(
        "/api/v1/agent/enroll",
        {"enrollment_code": "enr_not-a-code", "hostname": "h", "gpus": []},
        content_type="application/json",
    )
    assert 400 <= enroll.status_code < 500 and enroll.json()["error"], enroll.content
    bad_token = client.post(
        TELEMETRY, {}, content_type="application/json", headers={"Authorization": "Bearer x"}
    )
    assert bad_token.status_code == 401
    assert client.get("/").status_code == 200
    health = client.get("/healthz")
    assert (health.status_code, health.json()["parts"]["cache"]) == (503, "down")


@pytest.mark.django_db
def test_rate_limit_holds_while_the_file_cache_culls_its_entries(settings, tmp_path):
    start_of_a_window()
    node = EnrolledNode.enroll(gpus=1)
    settings.TELEMETRY_RATE_PER_MIN = 3
    settings.CACHES = file_cache(tmp_path / "cache", max_entries=50)
    start = timezone.now() - timedelta(minutes=5)
    for k in range(3):
        assert node.post(node.batch([start + timedelta(seconds=k)])).status_code == 202

    # Other users of the cache fill it far past MAX_ENTRIES: Django culls a random third of
    # the entries each time it is full, dozens of times over.
    for i in range(500):
        cache.set(f"filler-{i}", "x" * 100, timeout=600)
    assert len(list((tmp_path / "cache").glob("*.djcache"))) <= 50

    answer = node.post(node.batch([start + timedelta(seconds=10)]))
    assert answer.status_code == 429, answer.content


# --- real processes: what a kill costs, measured ---------------------------------------------


class HttpAgent(threading.Thread):
    """Posts a batch (one sample per GPU, a second apart) every `every_s` to a real web process,
    as a fleet of agents would, recording each answer and every sample accepted."""

    def __init__(self, url: str, node: EnrolledNode, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.url = url
        self.node = node
        self.every_s = every_s
        self.start_ts = timezone.now() - timedelta(hours=1)
        self.posted = 0
        self.answers: list[tuple[float, int, str, bytes]] = []  # (time, status, type, body)
        self.sent: set = set()
        self.running = threading.Event()
        self.finished = threading.Event()
        self.running.set()

    def run(self) -> None:
        while not self.finished.is_set():
            if not self.running.wait(timeout=0.05):
                continue
            self.post_one()
            time.sleep(self.every_s)

    def post_one(self) -> int:
        ts = self.start_ts + timedelta(seconds=self.posted)
        self.posted += 1
        body = self.node.batch([ts])
        reply = http_request(self.url, "POST", body, self.node.token, timeout=30)
        kind = reply.headers.get("Content-Type", "")
        self.answers.append((time.time(), reply.status, kind, reply.body))
        if reply.status in (200, 202):
            self.sent.update((u, ts) for u in self.node.gpu_uuids)
        return reply.status

    def stop(self) -> None:
        self.finished.set()
        self.join(timeout=60)

    def statuses(self, since: float = 0.0) -> Counter:
        return Counter(status for at, status, _, _ in self.answers if at >= since)


def stored_after(node: EnrolledNode, moment: float) -> float | None:
    """When the first batch was stored after `moment` (epoch seconds), if one was."""
    first = (
        node.batches()
        .filter(status=PROCESSED, processed_at__gt=datetime.fromtimestamp(moment, tz=UTC))
        .order_by("processed_at")
        .values_list("processed_at", flat=True)
        .first()
    )
    return None if first is None else first.timestamp()


def all_stored(node: EnrolledNode) -> bool:
    return not node.batches().exclude(status=PROCESSED).exists()


def assert_stored_exactly_once(node: EnrolledNode, agent: HttpAgent) -> None:
    assert not node.batches().exclude(status=PROCESSED).exists()
    stored = node.stored()
    expected = {(u, ts.astimezone(UTC)) for u, ts in agent.sent}
    assert stored == expected, f"{len(expected - stored)} missing, {len(stored - expected)} extra"
    assert node.stored_count() == len(expected)


def assert_no_500(agent: HttpAgent) -> None:
    for _, status, kind, body in agent.answers:
        assert status < 500 or (status == 503 and kind.startswith("application/json")), (
            status,
            body[:300],
        )


def ready_at(worker, timeout: float = 90) -> float:
    """When the worker said it was ready (polled every 50 ms: the moment it could take work)."""
    marker = " ready."

    def ready():
        if worker.proc.poll() is not None:
            pytest.fail(f"the worker exited:\n{tail(worker.log_path)}")
        return marker in worker.output()

    wait_until(ready, timeout, "the worker never got ready", worker.log_path, interval=0.05)
    return time.time()


def start_web_and_beat(reaper, tmp_path, env: dict) -> WebProcess:
    """The portal under gunicorn and Celery beat, with `env`; both stopped at teardown."""
    web = WebProcess(free_port(), tmp_path / "web.log", env).start()
    reaper.add(web.kill)
    beat = BeatProcess(tmp_path, env).start()
    reaper.add(beat.stop)
    return web


def reporting_agent(reaper, web: WebProcess, worker) -> tuple[EnrolledNode, HttpAgent]:
    """A node of two GPUs whose agent reports to `web`, once `worker` has stored some of it."""
    node = EnrolledNode.enroll(gpus=2)
    agent = HttpAgent(f"{web.url}{TELEMETRY}", node)
    agent.start()
    reaper.add(agent.stop)
    wait_until(
        lambda: node.batches().filter(status=PROCESSED).count() >= 10,
        90,
        "storing never started",
        worker.log_path,
        web.log_path,
    )
    return node, agent


def report(title: str, **figures: float) -> None:
    shown = ", ".join(f"{name.replace('_', ' ')} {value:.2f} s" for name, value in figures.items())
    print(f"\n[faults] {title}: {shown}")


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_costs_seconds_with_and_without_traffic(tmp_path, reaper):
    queue = unique_queue("worker-kill")
    reaper.add(purge_queues, queue)
    env = portal_env(queue, WORKER_HEARTBEAT_S="3600")
    web = start_web_and_beat(reaper, tmp_path, env)
    workers = iter(range(1, 10))

    def new_worker():
        return start_worker(reaper, queue, tmp_path / f"worker-{next(workers)}.log", env)

    worker = new_worker()
    node, agent = reporting_agent(reaper, web, worker)

    # 1. Under traffic: SIGKILL the whole worker (pool included), start a new one at once.
    killed = time.time()
    sigkill_tree(worker.proc)
    worker = new_worker()
    ready = ready_at(worker)
    wait_until(
        lambda: stored_after(node, killed), 60, "nothing stored after the kill", worker.log_path
    )
    resumed = stored_after(node, killed)
    report(
        "worker SIGKILLed under traffic",
        storing_stopped=resumed - killed,
        new_worker_start_up=ready - killed,
        resumed_after_ready=resumed - ready,
    )
    assert resumed - ready <= FEW_SECONDS

    # 2. Without traffic: a drain holding its lease dies, and nobody reports afterwards.
    wait_until(lambda: stored_after(node, time.time() - 1), 30, "storing never steady")
    slot = node.node_id % settings.INGEST_DRAINS
    killed = time.time()
    sigkill_tree(worker.proc)
    agent.running.clear()
    time.sleep(0.5)  # the agent's last report in flight is answered
    leased = cache.get(dispatch.DRAIN_FLAG.format(slot=slot)) is not None
    for _ in range(2):  # batches the dead drain's lease says are covered
        assert agent.post_one() == 202
    waiting = node.batches().filter(status=PENDING).count()
    worker = new_worker()
    ready = ready_at(worker)
    wait_until(lambda: all_stored(node), 60, "batches left pending", worker.log_path)
    done = time.time()
    report(
        f"worker SIGKILLed, then no traffic ({waiting} batches waiting, lease held: {leased})",
        new_worker_start_up=ready - killed,
        all_stored_after_ready=done - ready,
    )
    assert leased and waiting >= 2
    assert done - ready <= settings.INGEST_SWEEP_EVERY_S + FEW_SECONDS

    agent.stop()
    assert_no_500(agent)
    assert_stored_exactly_once(node, agent)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_redis_killed_under_traffic_answers_no_500_and_costs_seconds(tmp_path, reaper):
    """Redis as both the cache and the broker of the web process, the worker and beat (as
    production runs), SIGKILLed under a running agent and restarted empty."""
    needs_redis_server()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    reaper.add(redis.stop)
    queue = unique_queue("redis-kill")
    env = portal_env(
        queue, CELERY_BROKER_URL=redis.url, CACHE_URL=redis.cache_url, WORKER_HEARTBEAT_S="3600"
    )
    web = start_web_and_beat(reaper, tmp_path, env)
    worker = start_worker(reaper, queue, tmp_path / "worker.log", env)
    node, agent = reporting_agent(reaper, web, worker)

    # Down longer than a drain runs (INGEST_DRAIN_MAX_S): the drain at work when Redis died
    # goes on storing without it, then cannot hand over; storing stops until Redis is back.
    killed = time.time()
    redis.crash()
    time.sleep(1.0)
    others = {
        "GET /auth/nonce": http_request(f"{web.url}/auth/nonce"),
        "POST /api/v1/agent/enroll": http_request(
            f"{web.url}/api/v1/agent/enroll", "POST", {"enrollment_code": "enr_nope"}
        ),
        "POST telemetry, bad token": http_request(
            f"{web.url}{TELEMETRY}", "POST", {}, token=f"not-a-token-{uuid.uuid4()}"
        ),
        "GET /": http_request(f"{web.url}/"),
        "GET /signin/": http_request(f"{web.url}/signin/"),
    }
    health = http_request(f"{web.url}/healthz")
    time.sleep(max(0.0, killed + settings.INGEST_DRAIN_MAX_S + 2 - time.time()))
    back = time.time()
    redis.restart()
    wait_until(
        lambda: stored_after(node, back), 60, "nothing stored after the restart", worker.log_path
    )
    resumed = stored_after(node, back)
    during = agent.statuses(since=killed)
    agent.stop()
    wait_until(lambda: all_stored(node), 60, "batches left pending", worker.log_path)
    longest_wait = max(
        (done - received).total_seconds()
        for received, done in node.batches().values_list("received_at", "processed_at")
    )
    report(
        f"Redis SIGKILLed for {back - killed:.1f} s under traffic (answers: {dict(during)})",
        storing_resumed_after_restart=resumed - back,
        longest_wait_of_a_batch=longest_wait,
    )

    assert resumed - back <= FEW_SECONDS
    assert set(during) <= {202, 503}, during
    assert_no_500(agent)
    for what, reply in others.items():
        assert reply.status < 500, (what, reply.status, reply.body[:300])
    assert health.status == 503 and health.json()["parts"]["cache"] == "down"
    assert_stored_exactly_once(node, agent)
    assert TelemetryBatch.objects.filter(node_id=node.node_id).count() == agent.statuses()[202]
