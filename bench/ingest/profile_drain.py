"""bench/ingest/profile_drain.py: where a drain's time goes, in the worker and in PostgreSQL.

The worker side of bench/ingest, in one process and without the web or the broker: pending
batches as the API stores them (8 GPUs x 3 samples, in order, every node of the fleet having
reported once) are drained `--per-drain` at a time by `store.drain`, as a busy Celery drain
takes them. Printed: the drain's wall time and the process's CPU per sample, every statement of
one drain with its time (the database's share), and a cProfile of the drains by own time.

    .venv/bin/python bench/ingest/profile_drain.py [--nodes 2000] [--batches 4000]
        [--per-drain 50] [--top 25] [--no-profile]

It creates (and drops first) the PostgreSQL database `bench_drain_profile`.
"""

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG = "postgres://postgres@127.0.0.1:5432"
DB = "bench_drain_profile"
GPUS_PER_NODE = 8
SAMPLES_PER_GPU = 3


def setup(nodes: int):
    sys.path.insert(0, str(ROOT))
    from bench import scratch

    url = scratch.create(f"{PG}/postgres", DB)
    os.environ.update(scratch.portal_env(url, cache_url="locmemcache://"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from contributors.models import GPU, Contributor, Node

    owner = Contributor.objects.create(username="bench")
    rows = [Node(owner=owner, name=f"bench-{i}") for i in range(nodes)]
    for node in rows:
        node.set_new_token()
    Node.objects.bulk_create(rows, batch_size=2000)
    node_ids = list(Node.objects.order_by("pk").values_list("pk", flat=True))
    GPU.objects.bulk_create(
        (
            GPU(node_id=n, uuid=f"GPU-{uuid.uuid4()}", name="H100", memory_total_mib=81559)
            for n in node_ids
            for _ in range(GPUS_PER_NODE)
        ),
        batch_size=5000,
    )
    fleet: dict[int, list[int]] = {}
    for gpu, node in GPU.objects.order_by("pk").values_list("pk", "node_id"):
        fleet.setdefault(node, []).append(gpu)
    return fleet


def add_batches(fleet: dict[int, list[int]], count: int, base: datetime, step: dict) -> None:
    """`count` pending batches, round-robin over the nodes, in the form the API stores."""
    from contributors.models import TelemetryBatch

    nodes = sorted(fleet)
    rows = []
    for index in range(count):
        node = nodes[index % len(nodes)]
        k0 = step.get(node, 0)
        step[node] = k0 + SAMPLES_PER_GPU
        samples = [
            [gpu, (base + timedelta(seconds=10 * (k0 + k))).isoformat(), 87.0, 40000, 81559,
             61.0, 512.5, "bench-job"]
            for k in range(SAMPLES_PER_GPU)
            for gpu in fleet[node]
        ]  # fmt: skip
        rows.append(
            TelemetryBatch(
                node_id=node,
                batch_id=uuid.uuid4(),
                clock_skew_s=0.0,
                samples=samples,
                sample_count=len(samples),
                response={"accepted": len(samples)},
            )
        )
    TelemetryBatch.objects.bulk_create(rows, batch_size=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=4000)
    parser.add_argument("--per-drain", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()

    fleet = setup(args.nodes)
    from django.db import connection

    from contributors.telemetry import store
    from portal.lib import db

    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    step: dict = {}
    add_batches(fleet, len(fleet), base, step)  # every node once: GPUs have a newest sample
    while store.drain(500)[0]:
        pass
    add_batches(fleet, args.batches, base, step)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    # Every statement of one drain, with its time.
    statements: list[tuple[float, str]] = []
    fetch = db.fetch

    def timed_fetch(sql, params):
        began = time.perf_counter()
        try:
            return fetch(sql, params)
        finally:
            statements.append((time.perf_counter() - began, "fetch " + " ".join(sql.split())))

    def wrapper(execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((time.perf_counter() - began, "orm   " + " ".join(sql.split())))

    db.fetch = timed_fetch
    with connection.execute_wrapper(wrapper):
        store.drain(args.per_drain)
    db.fetch = fetch
    print(f"one drain of {args.per_drain} batches: {len(statements)} statements")
    for seconds, sql in statements:
        print(f"  {seconds * 1e3:7.2f} ms  {sql[:150]}")
    print(f"  {sum(s for s, _ in statements) * 1e3:7.2f} ms  in all")

    profile = None if args.no_profile else cProfile.Profile()
    began, cpu, samples, drains = time.perf_counter(), time.process_time(), 0, 0
    if profile:
        profile.enable()
    while True:
        taken, stored = store.drain(args.per_drain)
        if not taken:
            break
        samples += stored
        drains += 1
    if profile:
        profile.disable()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(
        f"{drains} drains, {samples} samples: {samples / wall:,.0f} samples/s, "
        f"wall {wall / samples * 1e6:.1f} us/sample, worker CPU {cpu / samples * 1e6:.1f} us/sample"
        f" (the rest is PostgreSQL and round trips{', under cProfile' if profile else ''})"
    )
    if profile:
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        # The drain's own steps, by cumulative time.
        stats.sort_stats("cumulative").print_stats(r"telemetry/|accumulators.py|lib/db.py", 30)
        print(out.getvalue())


if __name__ == "__main__":
    main()
