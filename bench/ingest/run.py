"""bench/ingest: telemetry ingestion end to end on PostgreSQL + Redis, all on loopback.

A fleet of simulated nodes of 8 GPUs posts batches of 24 samples (3 per GPU) to gunicorn (sync
workers) as fast as the server answers; Celery workers persist them. Printed:

- samples/s accepted by the API and samples/s persisted (counted in the samples table, from the
  first request to the last batch processed), API latency p50/p99;
- in the same run, a binary PostgreSQL COPY of the same number of rows into a copy of the
  samples table: the ceiling, and the ratio of persisted to it;
- the CPU time each part used (gunicorn, Celery, PostgreSQL, Redis, the load clients), in all
  and per request, since they all share this machine's cores.

Usage (PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379, as .ci/run expects):

    .venv/bin/python bench/ingest/run.py [--seconds 30] [--nodes 200] [--clients 4]
        [--web-workers 3] [--worker-concurrency 2]

It creates (and drops first) the database `bench_ingest` and uses Redis databases 14 and 15.
"""

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG = "postgres://postgres@127.0.0.1:5432"
DB = "bench_ingest"
BROKER = "redis://127.0.0.1:6379/14"
CACHE = "redis://127.0.0.1:6379/15"
GPUS_PER_NODE = 8
SAMPLES_PER_GPU = 3


def env() -> dict:
    return {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"{PG}/{DB}",
        "CELERY_BROKER_URL": BROKER,
        "CACHE_URL": CACHE,
        # The bench's few nodes post far more often than real ones (every 10-30 s).
        "TELEMETRY_RATE_PER_MIN": "1000000",
        "LOG_LEVEL": "WARNING",
        "DEMO_FLEET": "false",
        "PYTHONUNBUFFERED": "1",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_database(nodes: int) -> list[dict]:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env(),
        check=True,
    )
    import redis

    for url in (BROKER, CACHE):
        redis.Redis.from_url(url).flushdb()

    os.environ.update(env())
    sys.path.insert(0, str(ROOT))
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    django.setup()
    from contributors.models import GPU, Contributor, Node

    owner = Contributor.objects.create(username="bench")
    fleet = []
    for index in range(nodes):
        node = Node(owner=owner, name=f"bench-{index}")
        token = node.set_new_token()
        node.save()
        uuids = [f"GPU-{uuid.uuid4()}" for _ in range(GPUS_PER_NODE)]
        GPU.objects.bulk_create(
            GPU(node=node, uuid=u, name="NVIDIA H100 80GB HBM3", memory_total_mib=81559)
            for u in uuids
        )
        fleet.append({"token": token, "uuids": uuids})
    from django.db import connections

    connections.close_all()
    return fleet


def client(port: int, nodes: list[dict], seconds: float, start_at: float, out) -> None:
    """Post batches round-robin over `nodes` until the time is up; report latencies."""
    import http.client

    base = datetime.now(UTC) - timedelta(hours=23)
    step = [0] * len(nodes)
    latencies, accepted, errors = [], 0, 0
    while time.time() < start_at:
        time.sleep(0.005)
    deadline = start_at + seconds
    index = 0
    while time.time() < deadline:
        node = nodes[index % len(nodes)]
        position = index % len(nodes)
        index += 1
        samples = []
        for k in range(SAMPLES_PER_GPU):
            ts = (base + timedelta(seconds=10 * (step[position] + k))).isoformat()
            for gpu in node["uuids"]:
                samples.append(
                    {
                        "gpu_uuid": gpu,
                        "ts": ts,
                        "utilization_gpu_pct": 87.0,
                        "memory_used_mib": 40000,
                        "memory_total_mib": 81559,
                        "temperature_c": 61.0,
                        "power_w": 512.5,
                        "job_id": "bench-job",
                    }
                )
        step[position] += SAMPLES_PER_GPU
        body = json.dumps(
            {"batch_id": str(uuid.uuid4()), "sent_at": datetime.now(UTC).isoformat(),
             "samples": samples}
        )  # fmt: skip
        began = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(
                "POST",
                "/api/v1/agent/telemetry",
                body,
                {"Content-Type": "application/json", "Authorization": f"Bearer {node['token']}"},
            )
            response = conn.getresponse()
            payload = response.read()
            conn.close()
        except OSError:
            errors += 1
            continue
        latencies.append(time.perf_counter() - began)
        if response.status == 202:
            accepted += json.loads(payload)["accepted"]
        else:
            errors += 1
    times = os.times()
    out.put(
        {
            "latencies": latencies,
            "accepted": accepted,
            "errors": errors,
            "cpu_s": times.user + times.system,
        }
    )


def _proc_table() -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, parent pid, CPU seconds of it and its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[1] is the parent pid; utime, stime, cutime, cstime are fields 14-17 of stat.
        cpu = sum(int(x) for x in fields[11:15]) / tick
        table[int(entry.name)] = (name, int(fields[1]), cpu)
    return table


def cpu_by_component(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree (children reaped or alive)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    totals = {}
    for label, pids in roots.items():
        seen, stack, total = set(), list(pids), 0.0
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in table:
                continue
            seen.add(pid)
            total += table[pid][2]
            stack.extend(children.get(pid, []))
        totals[label] = total
    return totals


def service_roots() -> dict[str, list[int]]:
    """The PostgreSQL postmaster and the Redis server (the oldest process of each name)."""
    table = _proc_table()
    roots = {}
    for label, name in (("PostgreSQL", "postgres"), ("Redis", "redis-server")):
        pids = [pid for pid, (n, parent, _) in table.items() if n == name]
        tops = [pid for pid in pids if table[pid][1] not in pids]
        roots[label] = tops
    return roots


def wait_ready(port: int, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the web server did not start")


def copy_ceiling(rows: int) -> float:
    """Rows/s of a binary COPY of `rows` sample rows into a copy of the samples table."""
    import psycopg

    base = datetime.now(UTC) - timedelta(days=2)
    with psycopg.connect(f"{PG}/{DB}") as conn:
        gpu_ids = [r[0] for r in conn.execute("SELECT id FROM contributors_gpu").fetchall()]
        conn.execute(
            "CREATE TABLE copy_ceiling (LIKE contributors_sample INCLUDING DEFAULTS "
            "INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
        data = [
            (gpu_ids[i % len(gpu_ids)], base + timedelta(seconds=10 * (i // len(gpu_ids))),
             87.0, 40000, 81559, 61.0, 512.5, "bench-job")
            for i in range(rows)
        ]  # fmt: skip
        began = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY copy_ceiling (gpu_id, ts, utilization_gpu_pct, memory_used_mib, "
                "memory_total_mib, temperature_c, power_w, job_id) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(
                ["int8", "timestamptz", "float8", "int4", "int4", "float8", "float8", "text"]
            )
            for row in data:
                copy.write_row(row)
        conn.commit()
        return rows / (time.perf_counter() - began)


def count(sql: str) -> int:
    import psycopg

    with psycopg.connect(f"{PG}/{DB}") as conn:
        return conn.execute(sql).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    args = parser.parse_args()

    print(f"setting up {DB}: {args.nodes} nodes x {GPUS_PER_NODE} GPUs ...", flush=True)
    fleet = setup_database(args.nodes)
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.web_workers), "--log-level", "warning"],
            cwd=ROOT, env=env(), start_new_session=True,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "WARNING",
             "--concurrency", str(args.worker_concurrency), "--without-gossip",
             "--without-mingle", "--prefetch-multiplier", "16"],
            cwd=ROOT, env=env(), start_new_session=True,
        ),
    ]  # fmt: skip
    try:
        wait_ready(port)
        time.sleep(3)  # let the worker connect
        roots = {"gunicorn": [procs[0].pid], "Celery": [procs[1].pid], **service_roots()}
        cpu_before = cpu_by_component(roots)
        out = mp.Queue()
        start_at = time.time() + 1
        shares = [fleet[i :: args.clients] for i in range(args.clients)]
        clients = [
            mp.Process(target=client, args=(port, share, args.seconds, start_at, out))
            for share in shares
        ]
        for proc in clients:
            proc.start()
        results = [out.get() for _ in clients]
        for proc in clients:
            proc.join()
        load_end = time.time()
        accepted = sum(r["accepted"] for r in results)
        errors = sum(r["errors"] for r in results)
        latencies = sorted(x for r in results for x in r["latencies"])

        deadline = time.time() + 600
        while count("SELECT count(*) FROM contributors_telemetrybatch WHERE status = 'pending'"):
            if time.time() > deadline:
                raise SystemExit("batches still pending after 10 minutes")
            time.sleep(0.2)
        persisted_end = time.time()
        cpu_after = cpu_by_component(roots)
        persisted = count("SELECT count(*) FROM contributors_sample")
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)

    duration = load_end - start_at
    persist_duration = persisted_end - start_at
    ceiling = copy_ceiling(persisted)
    persisted_rate = persisted / persist_duration
    print(f"load: {args.seconds:.0f} s, {args.nodes} nodes x {GPUS_PER_NODE} GPUs, "
          f"{args.clients} clients, {args.web_workers} gunicorn sync workers, "
          f"{args.worker_concurrency} Celery worker processes")  # fmt: skip
    print(f"requests: {len(latencies)} answered, {errors} errors")
    print(f"accepted:  {accepted / duration:10.0f} samples/s ({accepted} samples)")
    print(f"persisted: {persisted_rate:10.0f} samples/s ({persisted} rows, all done "
          f"{persisted_end - load_end:.1f} s after the load stopped)")  # fmt: skip
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"latency:   p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"COPY:      {ceiling:10.0f} rows/s (binary COPY of the same rows, the ceiling)")
    print(f"ratio:     {persisted_rate / ceiling:.1%} of the COPY ceiling")
    cpu = {label: cpu_after[label] - cpu_before[label] for label in roots}
    cpu["load clients"] = sum(r["cpu_s"] for r in results)
    requests = max(1, len(latencies))
    print(
        "CPU:       "
        + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in cpu.items())
        + f" (of {2 * persist_duration:.0f} s on 2 cores)"
    )
    print(
        "per request: "
        + ", ".join(f"{label} {seconds / requests * 1000:.2f} ms" for label, seconds in cpu.items())
    )
    if accepted != persisted:
        print(f"MISMATCH: accepted {accepted} samples but {persisted} rows were stored")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
