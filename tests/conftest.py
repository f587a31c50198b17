"""Fixtures shared by the portal's tests: a clean cache and roomy limits for every test, the
contributors most tests sign in as, and real worker processes that see the test database.
Helpers that are not fixtures live in tests/support/."""

import os
import uuid

import pytest
from django.test import Client
from hypothesis import settings as hypothesis_settings

from contributors.signin import contributor_for_sign_in
from portal.celery_app import app as celery_app
from tests.support.agent_api import H100, Agent, enroll
from tests.support.processes import WorkerProcess, reaping
from tests.support.siwe import ALICE, BOB

# Proof of GPU is on by default; tests of other features run without it (as a network that
# verifies hardware another way would), and so do the processes they start. Tests of it are
# marked `gpu_verification`.
os.environ["GPU_VERIFICATION"] = "false"

# Fixtures for real-browser tests (Chromium through Playwright).
pytest_plugins = ["tests.support.browser"]

# Property tests check behaviour, not speed (benchmarks do that): no per-example deadline, which
# a loaded 2-core machine overruns at random.
hypothesis_settings.register_profile("portal", deadline=None)
hypothesis_settings.load_profile("portal")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate limits, heartbeats and drain flags live in the shared cache, and web processes
    remember a drain flag for a moment: every test starts without them."""
    from django.core.cache import cache

    from contributors.telemetry import dispatch
    from portal.lib import ratelimit

    cache.clear()
    ratelimit.clear()
    dispatch.forget()


@pytest.fixture(autouse=True)
def _gpu_verification(settings, request):
    settings.GPU_VERIFICATION = request.node.get_closest_marker("gpu_verification") is not None


@pytest.fixture(autouse=True)
def _roomy_address_limits(settings):
    """Every test client comes from one address (127.0.0.1), and many tests enroll machines
    or try tokens by the dozen: the limits per client address are raised for them. Tests of
    those limits set their own."""
    settings.ENROLL_RATE_PER_MIN = 10_000
    settings.BAD_TOKEN_RATE_PER_MIN = 10_000
    settings.SIWE_NONCE_RATE_PER_MIN = 10_000


@pytest.fixture
def alice():
    """The contributor who signs in with ALICE's wallet (modules may rebind `alice` to what
    they need of her, such as a signed-in client)."""
    return contributor_for_sign_in(ALICE.address)


@pytest.fixture
def bob():
    return contributor_for_sign_in(BOB.address)


@pytest.fixture
def staff(django_user_model):
    """A client signed in as a network admin (a superuser)."""
    admin = django_user_model.objects.create_superuser(
        username="network-admin", email="", password="a long enough admin password"
    )
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def agent(alice):
    """alice's node with one GPU (`H100`), enrolled through the agent API."""
    return Agent(enroll(alice, [H100]))


@pytest.fixture
def worker(tmp_path):
    """Start a real Celery worker on a fresh queue; tasks must be sent with `queue=worker.queue`."""
    process = WorkerProcess(f"test-{uuid.uuid4().hex[:12]}", tmp_path / "worker.log").start()
    yield process
    process.stop()


@pytest.fixture
def reaper():
    """Cleanups of real processes and brokers, run at teardown in reverse order, every one."""
    with reaping() as reaper:
        yield reaper


@pytest.fixture
def parking_queue():
    """Route this process's enqueues to a queue nobody consumes; yields a function that purges
    it and returns how many messages it held."""
    name = f"parked-{uuid.uuid4().hex[:12]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = name

    def purge() -> int:
        with celery_app.connection_for_write() as conn:
            return conn.default_channel.queue_purge(name) or 0

    try:
        yield purge
    finally:
        celery_app.conf.task_default_queue = previous
        purge()


@pytest.fixture
def seeded_catalog():
    """The GPU catalog as migrations seed it, for tests whose simulated GPUs must find their
    rated models and int8 figures: a transactional test before may have flushed the tables."""
    from importlib import import_module

    from django.apps import apps

    from contributors.telemetry import inventory
    from rewards.models import GpuModel

    if not GpuModel.objects.exists():
        seeds = ("0003_seed_gpu_catalog", "0006_catalog_memory_power_values", "0008_proof_of_gpu")
        for name in seeds:
            import_module(f"rewards.migrations.{name}").seed(apps, None)
    inventory.forget_catalog()
    yield
    inventory.forget_catalog()
