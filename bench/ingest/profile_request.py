"""bench/ingest/profile_request.py: where a gunicorn worker's time goes on one telemetry report.

The request side of bench/ingest, in one process and without a load generator: the WSGI
application gunicorn runs (`portal.wsgi.application`, the agent API's handler included) is
called directly with the reports fleet.lua sends (24 samples: 8 GPUs x 3, no inventory), for
nodes the portal already remembers (each reported once first). Printed: the worker's CPU per
request and per sample (the database's and Redis's CPU not included; their round trips are
wall time here), then a cProfile of the same loop, by own time and by cumulative time.

    .venv/bin/python bench/ingest/profile_request.py [--requests 3000] [--nodes 200]
        [--top 30] [--no-profile]

It creates (and drops first) the PostgreSQL database `bench_ingest_profile` and uses Redis
databases 12 and 13 (run.py's are 14 and 15, so both may run at once).
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG = "postgres://postgres@127.0.0.1:5432"
DB = "bench_ingest_profile"
BROKER = "redis://127.0.0.1:6379/12"
CACHE = "redis://127.0.0.1:6379/13"
GPUS_PER_NODE = 8
SAMPLES_PER_GPU = 3

SAMPLE = (
    '{{"gpu_uuid":"{gpu}","ts":"{ts}","utilization_gpu_pct":87.0,"memory_used_mib":40000,'
    '"memory_total_mib":81559,"temperature_c":61.0,"power_w":512.5,"job_id":"bench-job"}}'
)


def setup(nodes: int) -> list[dict]:
    import psycopg
    import redis

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    for url in (BROKER, CACHE):
        redis.Redis.from_url(url).flushdb()
    sys.path.insert(0, str(ROOT))
    from bench import scratch

    os.environ.update(
        {
            **scratch.portal_env(f"{PG}/{DB}", cache_url=CACHE, broker_url=BROKER),
            "TELEMETRY_RATE_PER_MIN": "1000000",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from contributors.models import GPU, Contributor, Node

    owner = Contributor.objects.create(username="bench")
    rows = [Node(owner=owner, name=f"bench-{index}") for index in range(nodes)]
    tokens = [node.set_new_token() for node in rows]
    Node.objects.bulk_create(rows)
    fleet = [
        {"token": token, "uuids": [f"GPU-{uuid.uuid4()}" for _ in range(GPUS_PER_NODE)], "step": 0}
        for token in tokens
    ]
    GPU.objects.bulk_create(
        GPU(node=node, uuid=u, name="NVIDIA H100 80GB HBM3", memory_total_mib=81559)
        for node, member in zip(rows, fleet, strict=True)
        for u in member["uuids"]
    )
    return fleet


def body(node: dict, base: datetime) -> bytes:
    """A report as fleet.lua writes it: fresh batch_id, times 10 s apart, whole seconds, `Z`."""
    times = [
        (base + timedelta(seconds=10 * (node["step"] + k))).strftime("%Y-%m-%dT%H:%M:%SZ")
        for k in range(SAMPLES_PER_GPU)
    ]
    node["step"] += SAMPLES_PER_GPU
    samples = ",".join(
        SAMPLE.format(gpu=gpu, ts=ts) for ts in times for gpu in node["uuids"]
    )  # fmt: skip
    sent = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'{{"batch_id":"{uuid.uuid4()}","sent_at":"{sent}","samples":[{samples}]}}'
    ).encode()  # fmt: skip


def post(application, token: str, payload: bytes) -> tuple[str, bytes]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/agent/telemetry",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(payload)),
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_HOST": "127.0.0.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(payload),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = status

    chunks = application(environ, start_response)
    content = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return answer["status"], content


def run(application, fleet: list[dict], base: datetime, count: int) -> None:
    for index in range(count):
        node = fleet[index % len(fleet)]
        status, content = post(application, node["token"], body(node, base))
        if not status.startswith("202"):
            raise SystemExit(f"unexpected answer {status}: {content[:300]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()

    fleet = setup(args.nodes)
    from portal.wsgi import application

    base = datetime.now(UTC) - timedelta(hours=6)
    run(application, fleet, base, len(fleet))  # each node once: the portal remembers them all
    samples = GPUS_PER_NODE * SAMPLES_PER_GPU

    # Building the bodies is the load generator's work: time it alone and take it out.
    probe = [dict(node) for node in fleet]
    began = time.process_time()
    for index in range(args.requests):
        body(probe[index % len(probe)], base)
    making = time.process_time() - began

    began_cpu, began_wall = time.process_time(), time.perf_counter()
    run(application, fleet, base, args.requests)
    cpu = time.process_time() - began_cpu - making
    wall = time.perf_counter() - began_wall - making
    print(
        f"{args.requests} reports of {samples} samples: worker CPU "
        f"{cpu / args.requests * 1e6:.0f} us a request, {cpu / args.requests / samples * 1e6:.1f} "
        f"us a sample; wall {wall / args.requests * 1e6:.0f} us a request "
        "(database and Redis round trips included)"
    )
    if args.no_profile:
        return
    profiler = cProfile.Profile()
    profiler.enable()
    run(application, fleet, base, args.requests)
    profiler.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(args.top)
        print(f"--- by {order} (profiled, so slower than above) ---")
        print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
    print(json.dumps({"cpu_us_per_request": round(cpu / args.requests * 1e6)}))


if __name__ == "__main__":
    main()
