"""bench/ingest: telemetry ingestion end to end on PostgreSQL + Redis, all on loopback.

A fleet of simulated nodes of 8 GPUs (12,500 nodes: 100,000 GPUs by default) posts batches of
24 samples (3 per GPU, 10 s apart) to gunicorn (sync workers) as fast as the server answers;
Celery workers persist them and beat runs the ingestion side's periodic tasks (rollups,
sweeper), as in production. The load comes from wrk with `fleet.lua` (Debian's `wrk` package;
without it, from Python processes, which take more of the shared cores). A warm-up lets every
node report first (it goes on with the nodes not yet seen until none is left), as to a portal
that has been running, whose GPUs have their next proof-of-GPU challenge scheduled at random
(the fleet does not answer challenges: a node that gets one takes the full path until the run
ends). Printed, for the measured phase:

- samples/s accepted by the API (its own count) and samples/s persisted (counted in the samples
  table, from the first request to the last batch stored), API latency p50/p99;
- in the same run, a binary PostgreSQL COPY of the same number of rows into a copy of the
  samples table: the ceiling, and the ratio of persisted to it;
- the CPU time each part used (gunicorn, Celery, PostgreSQL, Redis, the load generator), in all,
  per request and per sample persisted, since they all share this machine's cores (PostgreSQL:
  the bench database's processes and the server's background ones, not other databases').

Usage (PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379, as .ci/run expects):

    .venv/bin/python bench/ingest/run.py [--seconds 60] [--warmup 40] [--nodes 12500]
        [--clients 8] [--web-workers 2] [--worker-concurrency 2] [--python-clients]

It creates (and drops first) the database `bench_ingest` and uses Redis databases 14 and 15.
"""

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench import scratch  # noqa: E402 - needs ROOT on the path

PG = "postgres://postgres@127.0.0.1:5432"
DB = "bench_ingest"
BROKER = "redis://127.0.0.1:6379/14"
CACHE = "redis://127.0.0.1:6379/15"
GPUS_PER_NODE = 8
SAMPLES_PER_GPU = 3


def env(nodes: int = 12500) -> dict:
    overrides = {}
    if nodes < 5000:
        # A small fleet must post far more often than real nodes (every 10-30 s) to load the
        # portal, past the per-node rate limit; a fleet of realistic size stays within it.
        overrides["TELEMETRY_RATE_PER_MIN"] = "1000000"
    return {
        **overrides,
        **os.environ,
        **scratch.portal_env(f"{PG}/{DB}", cache_url=CACHE, broker_url=BROKER),
        # Beat runs the ingestion side's periodic tasks (rollups, sweeper); settlement has a
        # bench of its own (bench/settle) and would here settle the warm-up's hours at once.
        "REWARD_SETTLE_EVERY_S": str(10**9),
        "CLAIM_WATCH_EVERY_S": str(10**9),
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
        env=env(nodes),
        check=True,
    )
    import redis

    for url in (BROKER, CACHE):
        redis.Redis.from_url(url).flushdb()

    os.environ.update(env(nodes))
    import django

    django.setup()
    from contributors.models import GPU, Contributor, Node

    owner = Contributor.objects.create(username="bench")
    rows = [Node(owner=owner, name=f"bench-{index}") for index in range(nodes)]
    tokens = [node.set_new_token() for node in rows]
    Node.objects.bulk_create(rows, batch_size=2000)
    fleet = [
        {
            "name": node.name,
            "token": token,
            "uuids": [f"GPU-{uuid.uuid4()}" for _ in range(GPUS_PER_NODE)],
        }
        for node, token in zip(rows, tokens, strict=True)
    ]
    # Each GPU's next proof-of-GPU challenge as a running portal has it scheduled (random,
    # GPU_VERIFICATION_INTERVAL_S apart on average): with none scheduled, every GPU of the
    # fleet would be due at once, and the sweep would issue a verification wave (~4,000
    # challenges every 15 s, 60 times the steady rate at 100,000 GPUs) during the measurement.
    # Those issued during the run stay unanswered (the fleet does not compute proofs), so their
    # nodes take the full path until the run ends.
    from contributors.verification.challenges import next_time

    now = datetime.now(UTC)
    GPU.objects.bulk_create(
        (
            GPU(
                node=node,
                uuid=u,
                name="NVIDIA H100 80GB HBM3",
                memory_total_mib=81559,
                next_challenge_at=next_time(now),
            )
            for node, member in zip(rows, fleet, strict=True)
            for u in member["uuids"]
        ),
        batch_size=5000,
    )
    from django.db import connections

    connections.close_all()
    return fleet


def sample_objects(uuids: list[str], times: list[str]) -> list[dict]:
    """A report's samples as fleet.lua writes them: each GPU at each time, 87 % busy."""
    return [
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
        for ts in times
        for gpu in uuids
    ]


def post_report(port: int, token: str, body: str) -> tuple[int, bytes]:
    """POST one report on a new connection (as gunicorn's sync workers close each); its
    status and body. Raises OSError when the connection fails."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/api/v1/agent/telemetry",
            body,
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def client(
    port: int, nodes: list[dict], seconds: float, start_at: float, first_sample: float, out
) -> None:
    """Post batches round-robin over `nodes` until the time is up; report latencies."""
    # Each node's samples are 10 s apart; with the default fleet a node posts about every 30 s,
    # so sample times move about as fast as the clock, as with real agents.
    base = datetime.fromtimestamp(first_sample, UTC)
    step = [0] * len(nodes)
    latencies, accepted, errors = [], 0, 0
    # One JSON template per node, filled in per request with str.replace: the load generator
    # shares the machine's cores with the portal, so it spends as little of them as it can.
    templates = []
    for node in nodes:
        samples = sample_objects(node["uuids"], [f"@TS{k}@" for k in range(SAMPLES_PER_GPU)])
        templates.append(
            json.dumps({"batch_id": "@BATCH@", "sent_at": "@SENT@", "samples": samples})
        )
    while time.time() < start_at:
        time.sleep(0.005)
    deadline = start_at + seconds
    index = 0
    while time.time() < deadline:
        node = nodes[index % len(nodes)]
        position = index % len(nodes)
        index += 1
        body = templates[position].replace("@BATCH@", str(uuid.uuid4()))
        body = body.replace("@SENT@", datetime.now(UTC).isoformat())
        for k in range(SAMPLES_PER_GPU):
            ts = (base + timedelta(seconds=10 * (step[position] + k))).isoformat()
            body = body.replace(f"@TS{k}@", ts)
        step[position] += SAMPLES_PER_GPU
        began = time.perf_counter()
        try:
            status, payload = post_report(port, node["token"], body)
        except OSError:
            errors += 1
            continue
        latencies.append(time.perf_counter() - began)
        if status == 202:
            accepted += json.loads(payload)["accepted"]
        else:
            errors += 1
    times = os.times()
    out.put(
        {
            "latencies": latencies,
            "accepted": accepted,
            "errors": errors,
            "cpu_s": (times.user + times.system, times.system),
        }
    )


def _proc_table() -> dict[int, tuple[str, int, float, float]]:
    """pid -> (command name, parent pid, CPU seconds of it and its reaped children, of which
    in the kernel)."""
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
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        cpu = (utime + stime + cutime + cstime) / tick
        table[int(entry.name)] = (name, int(fields[1]), cpu, (stime + cstime) / tick)
    return table


def cpu_by_component(roots: dict[str, list[int]]) -> dict[str, tuple[float, float]]:
    """(CPU seconds, of which in the kernel) used so far by each named process tree (children
    reaped or alive)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    totals = {}
    for label, pids in roots.items():
        seen, stack, total, kernel = set(), list(pids), 0.0, 0.0
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in table:
                continue
            seen.add(pid)
            total += table[pid][2]
            kernel += table[pid][3]
            stack.extend(children.get(pid, []))
        totals[label] = (total, kernel)
    return totals


def service_roots() -> dict[str, list[int]]:
    """The PostgreSQL postmaster and the Redis server (the oldest process of each name)."""
    table = _proc_table()
    roots = {}
    for label, name in (("PostgreSQL", "postgres"), ("Redis", "redis-server")):
        pids = [pid for pid, (n, _, _, _) in table.items() if n == name]
        tops = [pid for pid in pids if table[pid][1] not in pids]
        roots[label] = tops
    return roots


class PostgresMeter:
    """CPU of the PostgreSQL processes that work for `db` (its backends and autovacuum
    workers, whose titles name it) and of the server's background processes (WAL writer,
    checkpointer, ...), from `start` to `stop`. Other databases on the same server (other
    people's tests, here) are left out, which the postmaster's process tree cannot do. Polled,
    so that a backend that exits in between (a connection past CONN_MAX_AGE) still counts up
    to its last poll."""

    POLL_S = 0.5

    def __init__(self, db: str):
        self.db = re.compile(rf"\b{re.escape(db)}\b")
        self.first: dict[int, tuple[float, float]] = {}
        self.last: dict[int, tuple[float, float]] = {}
        self.done = threading.Event()

    def _ours(self) -> dict[int, tuple[float, float]]:
        found = {}
        for pid, (name, _, cpu, kernel) in _proc_table().items():
            if name != "postgres":
                continue
            try:
                title = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            client = "(" in title or "[local]" in title or "autovacuum worker" in title
            if self.db.search(title) or (title.startswith("postgres: ") and not client):
                found[pid] = (cpu, kernel)
        return found

    def _poll(self) -> None:
        while not self.done.wait(self.POLL_S):
            self.last.update(self._ours())

    def start(self) -> None:
        self.first = self._ours()
        self.last = dict(self.first)
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def stop(self) -> tuple[float, float]:
        self.done.set()
        self.thread.join()
        self.last.update(self._ours())
        return tuple(
            sum(cpu[i] - self.first.get(pid, (0.0, 0.0))[i] for pid, cpu in self.last.items())
            for i in (0, 1)
        )


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


def count(sql: str, params: list | None = None) -> int:
    import psycopg

    with psycopg.connect(f"{PG}/{DB}") as conn:
        return conn.execute(sql, params).fetchone()[0]


def wait_until_stored(timeout: float = 600) -> None:
    """Until every accepted batch is stored, requests still in flight at the end included."""
    deadline = time.time() + timeout
    last_total = -1
    while True:
        total = count("SELECT count(*) FROM contributors_telemetrybatch")
        pending = count("SELECT count(*) FROM contributors_telemetrybatch WHERE status = 'pending'")
        if pending == 0 and total == last_total:
            return
        if time.time() > deadline:
            raise SystemExit(f"{pending} batches still pending after {timeout:.0f} s")
        last_total = total
        time.sleep(0.2)


def report_once(port: int, nodes: list[dict], first_sample: int) -> None:
    """One first report of each node (its inventory and 3 samples per GPU, as fleet.lua's),
    one after the other: no node moves its sample times on more than one report."""
    base = datetime.fromtimestamp(first_sample, UTC)
    for node in nodes:
        times = [(base + timedelta(seconds=10 * k)).isoformat() for k in range(SAMPLES_PER_GPU)]
        body = json.dumps(
            {
                "gpus": [
                    {"uuid": u, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}
                    for u in node["uuids"]
                ],
                "batch_id": str(uuid.uuid4()),
                "sent_at": datetime.now(UTC).isoformat(),
                "samples": sample_objects(node["uuids"], times),
            }
        )
        status, answer = post_report(port, node["token"], body)
        if status != 202:
            raise SystemExit(f"a warm-up report was refused: {status} {answer[:300]!r}")


def not_yet_seen(fleet: list[dict]) -> list[dict]:
    """The nodes of `fleet` none of whose reports was stored yet."""
    import psycopg

    with psycopg.connect(f"{PG}/{DB}") as conn:
        names = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM contributors_node WHERE last_seen_at IS NULL"
            ).fetchall()
        }
    return [node for node in fleet if node["name"] in names]


@dataclass
class Load:
    """What the load generator saw."""

    requests: int
    accepted: int
    errors: int
    p50_ms: float
    p99_ms: float
    cpu: tuple[float, float]  # CPU seconds of the generator, of which in the kernel
    started: float
    ended: float


def python_load(
    port: int, fleet: list[dict], args, seconds: float, first_sample: int, first: bool
) -> Load:
    """Client processes posting with http.client (when wrk is not installed; samples only,
    no inventory)."""
    out = mp.Queue()
    start_at = time.time() + 1
    shares = [fleet[i :: args.clients] for i in range(args.clients)]
    clients = [
        mp.Process(target=client, args=(port, share, seconds, start_at, first_sample, out))
        for share in shares
    ]
    for proc in clients:
        proc.start()
    results = [out.get() for _ in clients]
    for proc in clients:
        proc.join()
    latencies = sorted(x for r in results for x in r["latencies"]) or [0.0]
    return Load(
        requests=len(latencies),
        accepted=sum(r["accepted"] for r in results),
        errors=sum(r["errors"] for r in results),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        cpu=tuple(sum(r["cpu_s"][i] for r in results) for i in (0, 1)),
        started=start_at,
        ended=time.time(),
    )


def wrk_load(
    port: int, fleet: list[dict], args, seconds: float, first_sample: int, first: bool
) -> Load:
    """wrk with bench/ingest/fleet.lua: the same requests for a fraction of the client CPU."""
    with tempfile.NamedTemporaryFile("w", suffix=".fleet", delete=False) as handle:
        for node in fleet:
            handle.write(" ".join([node["token"], *node["uuids"]]) + "\n")
    threads = min(2, args.clients)
    started = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        ["wrk", "-t", str(threads), "-c", str(args.clients), "-d", f"{seconds:.0f}s",
         "--timeout", "30s", "-s", str(Path(__file__).with_name("fleet.lua")),
         f"http://127.0.0.1:{port}", "--", str(threads), str(first_sample), str(int(first))],
        env={**os.environ, "BENCH_FLEET": handle.name}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    output, _ = proc.communicate()
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(handle.name)
    line = next((x for x in output.splitlines() if x.startswith("WRK ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{output}")
    figures = dict(item.split("=") for item in line.split()[1:])
    return Load(
        requests=int(figures["requests"]),
        accepted=int(figures["accepted"]),
        errors=int(figures["refused"]) + int(figures["socket_errors"]),
        p50_ms=int(figures["p50_us"]) / 1000,
        p99_ms=int(figures["p99_us"]) / 1000,
        cpu=(
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
            after.ru_stime - before.ru_stime,
        ),
        started=started,
        ended=ended,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured load")
    parser.add_argument("--warmup", type=float, default=40, help="load before measuring (0: none)")
    parser.add_argument(
        "--nodes", type=int, default=12500, help="default: 100,000 GPUs, as in the target"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--python-clients", action="store_true", help="post from Python processes, not wrk"
    )
    args = parser.parse_args()
    use_wrk = not args.python_clients and shutil.which("wrk") is not None

    print(f"setting up {DB}: {args.nodes} nodes x {GPUS_PER_NODE} GPUs ...", flush=True)
    fleet = setup_database(args.nodes)
    port = free_port()
    beat_dir = tempfile.mkdtemp(prefix="bench-beat-")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.web_workers), "--log-level", "warning"],
            cwd=ROOT, env=env(args.nodes), start_new_session=True,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "WARNING",
             "--concurrency", str(args.worker_concurrency), "--without-gossip",
             "--without-mingle"],
            cwd=ROOT, env=env(args.nodes), start_new_session=True,
        ),
        # Beat as in production: the rollups and the sweeper run during the load.
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "WARNING",
             "-s", f"{beat_dir}/schedule"],
            cwd=ROOT, env=env(args.nodes), start_new_session=True,
        ),
    ]  # fmt: skip
    try:
        wait_ready(port)
        time.sleep(3)  # let the worker connect
        roots = {
            "gunicorn": [procs[0].pid],
            "Celery": [procs[1].pid, procs[2].pid],
            **service_roots(),
        }
        generate = wrk_load if use_wrk else python_load
        if args.warmup:
            # Every node reports once or twice first, as a portal that has been running has
            # seen them (the agents it remembers, warm caches); sample times of this phase
            # end long before the measured phase's.
            print(f"warm-up: {args.warmup:.0f} s ...", flush=True)
            generate(port, fleet, args, args.warmup, int(time.time()) - 7200, True)
            wait_until_stored()
            # On a slow day the warm-up's time does not reach every node: the rest report
            # once now, or the measured phase would take their first (full-path) reports.
            for _ in range(3):
                missing = not_yet_seen(fleet)
                if not missing:
                    break
                print(f"warm-up: {len(missing)} nodes not seen yet, one report each ...")
                report_once(port, missing, int(time.time()) - 7200)
                wait_until_stored()
            else:
                if missing := not_yet_seen(fleet):
                    raise SystemExit(f"{len(missing)} nodes were never stored in the warm-up")
        cpu_before = cpu_by_component(roots)
        postgres = PostgresMeter(DB)
        postgres.start()
        print(f"measuring: {args.seconds:.0f} s ...", flush=True)
        measured_from = int(time.time()) - 3600
        received_from = datetime.now(UTC)
        load = generate(port, fleet, args, args.seconds, measured_from, not args.warmup)
        wait_until_stored()
        persisted_end = time.time()
        cpu_after = cpu_by_component(roots)
        postgres_ours = postgres.stop()
        persisted = count(
            "SELECT count(*) FROM contributors_sample WHERE ts >= to_timestamp(%s)",
            [measured_from],
        )
        # What the API accepted, by its own account: the generator misses the answers to the
        # requests still in flight when it stops.
        accepted = count(
            "SELECT coalesce(sum(sample_count), 0) FROM contributors_telemetrybatch "
            "WHERE received_at >= %s",
            [received_from],
        )
        due = count("SELECT count(*) FROM contributors_rollupdue")
        minutes = count("SELECT count(*) FROM contributors_gpuminute")
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(beat_dir, ignore_errors=True)

    duration = load.ended - load.started
    persist_duration = persisted_end - load.started
    ceiling = copy_ceiling(persisted)
    persisted_rate = persisted / persist_duration
    generator = "wrk" if use_wrk else "Python client processes"
    print(f"load: {args.seconds:.0f} s, {args.nodes} nodes x {GPUS_PER_NODE} GPUs, "
          f"{args.clients} connections from {generator}, {args.web_workers} gunicorn sync "
          f"workers, {args.worker_concurrency} Celery worker processes and beat")  # fmt: skip
    print(f"requests: {load.requests} answered, {load.errors} errors")
    print(f"accepted:  {accepted / duration:10.0f} samples/s ({accepted} samples; the "
          f"generator saw {load.accepted} answered)")  # fmt: skip
    print(f"persisted: {persisted_rate:10.0f} samples/s ({persisted} rows, all done "
          f"{persisted_end - load.ended:.1f} s after the load stopped)")  # fmt: skip
    print(f"latency:   p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms")
    print(f"rollups:   {minutes} minute rows; {due} GPU spans still waiting for the next run")
    print(f"COPY:      {ceiling:10.0f} rows/s (binary COPY of the same rows, the ceiling)")
    print(f"ratio:     {persisted_rate / ceiling:.1%} of the COPY ceiling")
    cpu = {
        label: tuple(a - b for a, b in zip(cpu_after[label], cpu_before[label], strict=True))
        for label in roots
    }
    # The whole server's CPU counts other databases' work too (other tests on a shared machine).
    server = cpu.pop("PostgreSQL")
    cpu = {"gunicorn": cpu["gunicorn"], "Celery": cpu["Celery"], "PostgreSQL": postgres_ours,
           "Redis": cpu["Redis"], "load generator": load.cpu}  # fmt: skip
    requests = max(1, load.requests)
    cores = os.cpu_count() or 1
    print(
        "CPU:       "
        + ", ".join(f"{label} {total:.1f} s" for label, (total, _) in cpu.items())
        + f" (of {cores * persist_duration:.0f} s on {cores} cores)"
    )
    print(
        f"           PostgreSQL: {DB}'s backends and the server's background processes; the "
        f"whole server used {server[0]:.1f} s, other databases included"
    )
    print(
        "per request: "
        + ", ".join(
            f"{label} {total / requests * 1000:.2f} ms ({kernel / requests * 1000:.2f} kernel)"
            for label, (total, kernel) in cpu.items()
        )
    )
    # Per sample: what one GPU reading costs each part, whatever the batch size (requests still
    # in flight at the end are in `persisted`, not in `requests`).
    samples = max(1, persisted)
    print(
        "per sample:  "
        + ", ".join(
            f"{label} {total / samples * 1e6:.1f} us ({kernel / samples * 1e6:.1f} kernel)"
            for label, (total, kernel) in cpu.items()
        )
        + f"; all {sum(total for total, _ in cpu.values()) / samples * 1e6:.1f} us"
    )
    if accepted != persisted:
        print(f"MISMATCH: accepted {accepted} samples but {persisted} rows were stored")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
