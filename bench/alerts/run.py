"""Alert evaluation at scale: `contributors.alerts.evaluate.run(now)` on 100,000 GPUs.

    cd /work/main && DEBUG=true .venv/bin/python bench/alerts/run.py   # 10,000 then 100,000 GPUs
    .venv/bin/python bench/alerts/run.py --gpus 100000 --compare 0     # one size only
    .venv/bin/python bench/alerts/run.py --explain                     # + plans of the slowest

Options: --gpus N (100,000), --compare M (10,000, run first; 0: none), --challenge-days D (2),
--db NAME (bench_alerts), --admin-url URL, --explain, --slow S (2.0), --keep, --verbose.
About 4 minutes on 2 cores, most of it loading.

Needs PostgreSQL at 127.0.0.1:5432 (user `postgres`, trust; `--admin-url` or BENCH_ADMIN_URL
to change). For each size it drops and creates the database `bench_alerts` (dropped again at
the end unless --keep; never `test`, which CI uses), migrates it and loads by COPY (about 5
GPUs per contributor: one node of 8, one of 4, two of 2, or 1 + 3):

- every contributor has one active alert channel (email, verified, enabled, DEFAULT_EVENTS);
  one in ten has AlertPreferences (a time zone, 85 or 90 °C, the default 10 / 5 minutes);
- live state as the ingestion worker keeps it: nodes and GPUs seen 0-19 s ago; 1 % of nodes
  (id % 100 == 37) silent for 15 minutes, with their GPUs (offline); 0.1 % of GPUs on reporting
  machines silent as well (fell off the bus: `gpu_offline`); 0.5 % of GPUs (id % 200 == 13)
  at 95 °C with a recent sample (hot); 0.2 % disabled, 0.5 % of nodes retired (last seen 30 days
  ago), 0.1 % revoked;
- every GPU passed a proof-of-GPU challenge every 6 hours for `--challenge-days` (2) days, the
  newest ones decided during the timeline, as the verification sweeper does (~N/360 a minute).

Then it plays a timeline, one evaluation per virtual minute from T0 = 10:05 UTC, and times each
`evaluate.run(now)` call alone with time.perf_counter() (the call includes the sweep, which
queues Celery tasks: the broker is kombu's filesystem transport in a fresh temporary folder
that no worker consumes, so `.delay()` writes one small file per task):

  minute 0   (a) first evaluation: opens the offline, GPU-offline and hot conditions
  1-4, 6-7, 9-12, 14   (b) steady state: nothing changed (minutes 0 and 10 also look at the
             daily digest, as every 10 minutes)
  minute 5   hot GPUs notified (5 minutes at >= their limit)
  minute 8   (c) the offline ones notified (10 minutes silent): events, deliveries, tasks queued
  minute 13  (d) they report again: "back online" events, deliveries, tasks queued
  minute 41  (e) 10:46, the once-an-epoch check 15 minutes before the epoch closes

Between two evaluations, untimed, the world moves on as in production: an UPDATE refreshes
last_seen_at / last_sample_at of everything that reports (the ingestion worker), VACUUM ANALYZE
of the GPU and node tables and ANALYZE of the alert tables (what autovacuum does at that write
rate), and the deliveries the sweep queued are marked sent (the delivery workers). Minutes 0
and 41 are preceded by an identical warm-up run, rolled back, so that they do not pay for
Python imports (at 41 it also checks that the at-risk check ran: † in the table if not).

Printed: the PostgreSQL version and machine, the timeline per size (seconds, SQL queries counted
with CaptureQueriesContext, what each evaluation did), the time and queries of each step, a
comparison of the sizes (queries must not grow with the number of GPUs) and the slowest queries;
with --explain (or when a steady minute takes over 2 s) EXPLAIN (ANALYZE, BUFFERS) of them.
Never a timed test.
"""

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench import scratch  # noqa: E402 (run as a script: the project root first)

DB = "bench_alerts"
T0 = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)  # minute 5 of an hourly epoch
SILENT_SINCE = T0 - timedelta(minutes=2)  # the silent ones: last report 2 minutes before T0
NULL = "\\N"
MODELS = [
    ("NVIDIA H100 80GB HBM3", 81559, 700),
    ("NVIDIA A100-SXM4-80GB", 81920, 400),
    ("NVIDIA GeForce RTX 4090", 24564, 450),
    ("NVIDIA L4", 23034, 72),
    ("NVIDIA RTX 6000 Ada Generation", 49140, 300),
]
SHAPES = [[8], [4], [2, 2], [1, 3]]  # GPUs per node, by contributor index % 4: 5 on average
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "America/Sao_Paulo", "UTC"]

# Who is what, by id (the loader writes explicit ids, so SQL can say it too).
NODE_RETIRED = "mod({t}.id, 200) = 99"
NODE_SILENT = "mod({t}.id, 100) = 37"
GPU_OFF_BUS = "mod({t}.id, 1000) = 501"
GPU_HOT = "mod({t}.id, 200) = 13"
GPU_DISABLED = "mod({t}.id, 500) = 7"


def reporting(node: str, back: bool = False) -> str:
    """SQL: the node aliased `node` reports (the silent ones too once `back`)."""
    silent = "" if back else f" AND NOT ({NODE_SILENT.format(t=node)})"
    return f"{node}.revoked_at IS NULL AND NOT ({NODE_RETIRED.format(t=node)}){silent}"


# (minute after T0, scenario, label)
TIMELINE = [
    (0, "a", "first evaluation: conditions open"),
    (1, "b", "steady"),
    (2, "b", "steady"),
    (3, "b", "steady"),
    (4, "b", "steady"),
    (5, "hot", "hot GPUs notified"),
    (6, "b", "steady"),
    (7, "b", "steady"),
    (8, "c", "offline ones notified"),
    (9, "b", "steady"),
    (10, "b", "steady (+ digest look)"),
    (11, "b", "steady"),
    (12, "b", "steady"),
    (13, "d", "back online"),
    (14, "b", "steady"),
    (41, "e", "epoch closes in 14 min: at-risk check"),
]
BACK_AT = 13
STEPS = [
    "_open_offline", "_open_hot", "_resolve", "_notify", "_epoch_at_risk", "_earned_nothing",
    "_verification_failed", "_claims", "_digests", "fan_out", "sweep", "_queue",
]  # fmt: skip


# --- database and rows ------------------------------------------------------------------------


def ts(moment: datetime) -> str:
    return moment.isoformat()


class Copy:
    """Rows as COPY text, written in chunks."""

    def __init__(self, copy):
        self.copy, self.buf, self.n = copy, io.StringIO(), 0

    def row(self, *values) -> None:
        self.buf.write("\t".join(NULL if v is None else str(v) for v in values))
        self.buf.write("\n")
        self.n += 1
        if self.n % 20_000 == 0:
            self.flush()

    def flush(self) -> None:
        self.copy.write(self.buf.getvalue())
        self.buf = io.StringIO()


def load(url: str, gpus: int, challenge_days: int) -> dict:
    """Contributors, nodes, GPUs, channels, preferences and challenges, by COPY."""
    from contributors.models import DEFAULT_EVENTS

    node_gpus: list[list[int]] = []  # per contributor: GPUs per node
    total = 0
    while total < gpus:
        shape = list(SHAPES[len(node_gpus) % len(SHAPES)])
        if total + sum(shape) > gpus:  # the last one takes what is left
            shape, left = [], gpus - total
            while left:
                shape.append(min(left, 8))
                left -= shape[-1]
        node_gpus.append(shape)
        total += sum(shape)
    contributors = len(node_gpus)
    created = T0 - timedelta(days=60)
    counts = {"contributors": contributors}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO contributors_contributor (id, password, is_superuser, username,"
            " first_name, last_name, email, is_staff, is_active, date_joined)"
            " SELECT i, '!', false, 'bench-' || i, '', '', '', false, true, %s"
            " FROM generate_series(1, %s) i",
            (created, contributors),
        )
        nodes = []  # (node id, owner id, GPUs)
        for owner, shape in enumerate(node_gpus, start=1):
            for n in shape:
                nodes.append((len(nodes) + 1, owner, n))
        with cur.copy(
            "COPY contributors_node (id, owner_id, name, hostname, agent_version, token_prefix,"
            " token_hash, created_at, last_seen_at, revoked_at) FROM STDIN"
        ) as copy:
            out = Copy(copy)
            for node_id, owner, _ in nodes:
                revoked = seen = None
                if node_id % 1000 == 3:
                    revoked = seen = T0 - timedelta(days=3)
                elif node_id % 200 == 99:
                    seen = T0 - timedelta(days=30)
                elif node_id % 100 == 37:
                    seen = SILENT_SINCE
                else:
                    seen = T0 - timedelta(seconds=node_id % 20)
                out.row(node_id, owner, f"rig-{node_id}", f"host-{node_id}", "0.9.0",
                        f"p{node_id}", f"h{node_id:063d}", ts(created), ts(seen),
                        ts(revoked) if revoked else None)  # fmt: skip
            out.flush()
        counts["nodes"] = len(nodes)
        gpu_rows = []  # (gpu id, node id, name, memory)
        with cur.copy(
            "COPY contributors_gpu (id, node_id, uuid, name, memory_total_mib, driver_version,"
            " pci_bus_id, first_seen_at, last_seen_at, enabled, last_job_id, unrated,"
            " last_sample_at, last_utilization_gpu_pct, last_memory_used_mib,"
            " last_memory_total_mib, last_temperature_c, last_power_w) FROM STDIN"
        ) as copy:
            out = Copy(copy)
            for node_id, _, n in nodes:
                node_seen = (
                    T0 - timedelta(days=3) if node_id % 1000 == 3
                    else T0 - timedelta(days=30) if node_id % 200 == 99
                    else SILENT_SINCE if node_id % 100 == 37
                    else None
                )  # fmt: skip
                for k in range(n):
                    gpu_id = len(gpu_rows) + 1
                    name, memory, power = MODELS[(node_id + k) % len(MODELS)]
                    if node_seen is not None:
                        seen = node_seen
                    elif gpu_id % 1000 == 501:
                        seen = SILENT_SINCE
                    else:
                        seen = T0 - timedelta(seconds=gpu_id % 20)
                    temp = 95.0 if gpu_id % 200 == 13 else 35.0 + (gpu_id * 7) % 45
                    out.row(gpu_id, node_id, f"GPU-{uuid.UUID(int=gpu_id)}", name, memory,
                            "550.54.15", f"00000000:{k + 1:02X}:00.0", ts(created), ts(seen),
                            "f" if gpu_id % 500 == 7 else "t", "", "f", ts(seen),
                            gpu_id % 101, memory // 2, memory, temp, power * 0.6)  # fmt: skip
                    gpu_rows.append((gpu_id, node_id, name, memory))
            out.flush()
        counts["gpus"] = len(gpu_rows)
        events = json.dumps(DEFAULT_EVENTS)
        verified = T0 - timedelta(days=30)
        with cur.copy(
            "COPY contributors_alertchannel (contributor_id, kind, label, target, secret, events,"
            " enabled, verified_at, unsubscribed_at, created_at) FROM STDIN"
        ) as copy:
            out = Copy(copy)
            for owner in range(1, contributors + 1):
                out.row(owner, "email", "", f"bench-{owner}@example.org", "", events, "t",
                        ts(verified), None, ts(verified))  # fmt: skip
            out.flush()
        counts["channels"] = contributors
        with cur.copy(
            "COPY contributors_alertpreferences (contributor_id, time_zone, offline_after_min,"
            " temperature_c, temperature_for_min, quiet_start, quiet_end) FROM STDIN"
        ) as copy:
            out = Copy(copy)
            for owner in range(3, contributors + 1, 10):
                out.row(owner, ZONES[owner % len(ZONES)], 10, 85 + 5 * (owner % 2), 5, None,
                        None)  # fmt: skip
            out.flush()
        counts["preferences"] = len(range(3, contributors + 1, 10))
        # Challenges: one passed every 6 hours per GPU, the newest decided up to an hour after T0.
        with cur.copy(
            "COPY contributors_challenge (public_id, gpu_id, node_id, trigger, claimed_name,"
            " claimed_memory_mib, seed, n, rounds, checks, expected_ops_per_s, commit_within_s,"
            " status, reason, detail, issued_at, delivered_at, committed_at, revealed_at,"
            " decided_at, root, reveal_rows, revealed, measured_ops_per_s) FROM STDIN"
        ) as copy:
            out = Copy(copy)
            newest = T0 + timedelta(hours=1)
            for gpu_id, node_id, name, memory in gpu_rows:
                offset = timedelta(seconds=(gpu_id * 7919) % 21600)
                for k in range(challenge_days * 4):
                    decided = newest - offset - k * timedelta(hours=6)
                    issued = decided - timedelta(seconds=40)
                    out.row(uuid.uuid4(), gpu_id, node_id, "periodic", name, memory, "0" * 64,
                            8192, 64, 16, 1.2e14, 30.0, "passed", "", "", ts(issued),
                            ts(issued), ts(decided - timedelta(seconds=20)),
                            ts(decided - timedelta(seconds=5)), ts(decided), "0" * 64, "[]",
                            "[]", 1.1e14)  # fmt: skip
            out.flush()
        counts["challenges"] = len(gpu_rows) * challenge_days * 4
        for table in ("contributors_contributor", "contributors_node", "contributors_gpu"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"  # noqa: S608
            )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        gpus_of = (
            "SELECT count(*) FROM contributors_gpu g JOIN contributors_node n ON n.id = g.node_id"
        )
        nodes_of = "SELECT count(*) FROM contributors_node n"
        counts["silent_nodes"] = one(
            f"{nodes_of} WHERE {reporting('n', back=True)} AND {NODE_SILENT.format(t='n')}"
        )
        counts["silent_node_gpus"] = one(
            f"{gpus_of} WHERE {reporting('n', back=True)} AND {NODE_SILENT.format(t='n')}"
        )
        counts["off_bus_gpus"] = one(
            f"{gpus_of} WHERE {reporting('n')} AND {GPU_OFF_BUS.format(t='g')}"
        )
        counts["hot_gpus"] = one(
            f"{gpus_of} WHERE {reporting('n')} AND g.enabled AND {GPU_HOT.format(t='g')}"
        )
        counts["disabled_gpus"] = one(f"{gpus_of} WHERE {GPU_DISABLED.format(t='g')}")
        counts["retired_nodes"] = one(f"{nodes_of} WHERE {NODE_RETIRED.format(t='n')}")
        counts["revoked_nodes"] = one(
            "SELECT count(*) FROM contributors_node WHERE revoked_at IS NOT NULL"
        )
    return counts


def move_world(conn, at: datetime, back: bool) -> None:
    """What happens between two evaluations: everything that reports has reported in the last
    20 s (the silent ones too once `back`), vacuum and statistics, deliveries sent."""
    # Only this file's constants go into the SQL (hence the noqa).
    ago = "%(at)s - make_interval(secs => mod({}.id, 20))"
    node = ago.format("n")
    sql = f"UPDATE contributors_node n SET last_seen_at = {node} WHERE {reporting('n', back)}"  # noqa: S608
    conn.execute(sql, {"at": at})
    gpu = ago.format("g")
    off_bus = "" if back else f" AND NOT ({GPU_OFF_BUS.format(t='g')})"
    where = f"n.id = g.node_id AND {reporting('n', back)}{off_bus}"
    sql = f"UPDATE contributors_gpu g SET last_seen_at = {gpu}, last_sample_at = {gpu} FROM"  # noqa: S608
    conn.execute(f"{sql} contributors_node n WHERE {where}", {"at": at})
    conn.execute("VACUUM (ANALYZE) contributors_gpu, contributors_node")
    conn.execute(
        "ANALYZE contributors_alertcondition, contributors_alertevent,"
        " contributors_alertdelivery, contributors_alertcursor"
    )


def deliveries_sent(conn, at: datetime) -> int:
    """The delivery workers: what was queued is sent."""
    return conn.execute(
        "UPDATE contributors_alertdelivery SET status = 'sent', attempts = 1, sent_at = %(at)s"
        " WHERE status IN ('pending', 'sending') AND next_attempt_at <= %(at)s",
        {"at": at},
    ).rowcount


# --- instrumenting the evaluator ----------------------------------------------------------------


class Probe:
    """Time, queries and SQL time of each step of one evaluation (wrappers on the module
    functions); each query logged is tagged with the step that ran it."""

    def __init__(self):
        self.steps: dict[str, list] = {}

    def install(self, evaluate, delivery, connection) -> None:
        for name in STEPS:
            module = delivery if name in ("fan_out", "sweep", "_queue") else evaluate
            original = getattr(module, name, None)
            if original is None:  # the evaluator changed: time what is there
                continue

            def timed(*args, _original=original, _name=name, **kwargs):
                log = connection.queries_log
                q0, t = len(log), time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    seconds = time.perf_counter() - t
                    mine = [log[i] for i in range(q0, len(log))]
                    for q in mine:
                        q.setdefault("step", _name)
                    spent = self.steps.setdefault(_name, [0.0, 0, 0.0])
                    spent[0] += seconds
                    spent[1] += len(mine)
                    spent[2] += sum(float(q["time"]) for q in mine)

            setattr(module, name, timed)


def pg_version(admin_url: str) -> str:
    with psycopg.connect(admin_url) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name IN"
                " ('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost',"
                " 'jit', 'synchronous_commit')"
            ).fetchall()
        )
    return version + "\n  " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))


def run_size(args, gpus: int, broker_dir: Path, probe: "Probe") -> dict:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from contributors.alerts import evaluate
    from contributors.models import AlertCursor

    connection.close()
    scratch.create(args.admin_url, DB)
    from django.core.management import call_command

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrate_s = time.perf_counter() - t
    t = time.perf_counter()
    counts = load(scratch.url_of(args.admin_url, DB), gpus, args.challenge_days)
    load_s = time.perf_counter() - t
    print(f"\n=== {counts['gpus']:,} GPUs ===")
    print(
        f"{counts['contributors']:,} contributors with one active email channel each "
        f"({counts['preferences']:,} with preferences), {counts['nodes']:,} nodes, "
        f"{counts['gpus']:,} GPUs, {counts['challenges']:,} passed challenges; migrated in "
        f"{migrate_s:.1f} s, loaded by COPY + VACUUM ANALYZE in {load_s:.1f} s.\n"
        f"Live state at T0 {T0:%H:%M} UTC: {counts['silent_nodes']:,} nodes silent since "
        f"{SILENT_SINCE:%H:%M} (with {counts['silent_node_gpus']:,} GPUs), "
        f"{counts['off_bus_gpus']:,} GPUs silent on reporting machines, {counts['hot_gpus']:,} "
        f"GPUs at 95 °C; {counts['disabled_gpus']:,} GPUs disabled, {counts['retired_nodes']:,} "
        f"nodes retired, {counts['revoked_nodes']:,} revoked."
    )

    results = []
    queue = broker_dir / "queue"
    world = psycopg.connect(scratch.url_of(args.admin_url, DB), autocommit=True)
    try:
        for minute, scenario, label in TIMELINE:
            now = T0 + timedelta(minutes=minute)
            move_world(world, now, back=minute >= BACK_AT)
            missed = False
            if minute == 0 or scenario == "e":  # warm-up: the same evaluation, rolled back
                with transaction.atomic():
                    evaluate.run(now)
                    fired = AlertCursor.objects.filter(name="epoch_at_risk").exists()
                    transaction.set_rollback(True)
                for f in queue.iterdir():
                    f.unlink()
                if scenario == "e" and not fired:
                    missed = True  # the at-risk check did not run: say so
            probe.steps = {}
            with CaptureQueriesContext(connection) as captured:
                t = time.perf_counter()
                done = evaluate.run(now)
                seconds = time.perf_counter() - t
            published = sum(1 for f in queue.iterdir() if f.name.endswith(".msg"))
            for f in queue.iterdir():
                f.unlink()
            deliveries_sent(world, now)
            results.append(
                {
                    "minute": minute,
                    "scenario": scenario,
                    "label": label,
                    "seconds": seconds,
                    "queries": len(captured.captured_queries),
                    "done": done,
                    "published": published,
                    "steps": dict(probe.steps),
                    "missed": missed,
                    "sql": [
                        (float(q["time"]), q.get("step", "run"), q["sql"])
                        for q in captured.captured_queries
                    ],
                }
            )
            r = results[-1]
            if args.verbose:
                print(f"  minute {minute}: {seconds:.3f} s, {r['queries']} queries, {done}")
    finally:
        world.close()
    print_timeline(results)
    print_steps(results)
    return {"gpus": counts["gpus"], "results": results, "counts": counts}


# --- printing -----------------------------------------------------------------------------------


def print_timeline(results: list[dict]) -> None:
    print(
        f"\n{'min':>3} {'now':>5}  {'scenario':<44} {'seconds':>8} {'queries':>7}  {'opened':>6} "
        f"{'resolved':>8} {'events':>6} {'deliv.':>6} {'queued':>6} {'published':>9}"
    )
    for r in results:
        d = r["done"]
        counted = ("opened", "resolved", "deliveries", "queued")
        events = sum(v for k, v in d.items() if k not in counted and isinstance(v, int))
        scenario = f"({r['scenario']}) {r['label']}" if len(r["scenario"]) == 1 else r["label"]
        scenario += " †" if r["missed"] else ""
        now = T0 + timedelta(minutes=r["minute"])
        print(
            f"{r['minute']:>3} {now:%H:%M}  {scenario:<44} {r['seconds']:>8.3f} "
            f"{r['queries']:>7}  {d.get('opened', 0):>6} {d.get('resolved', 0):>8} {events:>6} "
            f"{d.get('deliveries', 0):>6} {d.get('queued', 0):>6} {r['published']:>9}"
        )
    print(
        "  resolved = conditions closed (the notified ones raise a 'back online' event each, not\n"
        "  in `events`); deliv. = delivery rows created; queued = what the sweep returned;\n"
        "  published = task messages found in the broker folder afterwards"
    )
    if any(r["missed"] for r in results):
        print("  † the at-risk check did not run (no `epoch_at_risk` cursor): not measured")


def print_steps(results: list[dict]) -> None:
    picks = [pick(results, s) for s in ("a", "b", "hot", "c", "d", "e")]
    names = ["(a) first", "(b) steady*", "hot notified", "(c) notify", "(d) online", "(e) at risk"]
    print(f"\n{'step':<22}" + "".join(f"{n:>16}" for n in names))
    for step in STEPS:
        cells = []
        for r in picks:
            s, q = r["steps"].get(step, (0.0, 0))[:2]
            cells.append(f"{s:>7.3f} s {q:>3} q")
        label = step if step != "_queue" else "  of which .delay()"
        print(f"{label:<22}" + "".join(f"{c:>16}" for c in cells))
    cells = []
    for r in picks:
        inner = {k: v[:2] for k, v in r["steps"].items() if k != "_queue"}
        s = r["seconds"] - sum(v[0] for v in inner.values())
        q = r["queries"] - sum(v[1] for v in inner.values())
        cells.append(f"{s:>7.3f} s {q:>3} q")
    print(f"{'lock, cursors, commit':<22}" + "".join(f"{c:>16}" for c in cells))
    cells = [f"{r['seconds']:>7.3f} s {r['queries']:>3} q" for r in picks]
    print(f"{'whole run()':<22}" + "".join(f"{c:>16}" for c in cells))
    b = pick(results, "b")
    print(f"  * (b) is minute {b['minute']}, the steady minute of median time")
    for r in picks:
        for step, (seconds, queries, sql_s) in r["steps"].items():
            if seconds > 1.0:
                print(
                    f"  minute {r['minute']}, {step}: {seconds:.2f} s, of which {sql_s:.2f} s in "
                    f"its {queries} queries (Django's timing) and {seconds - sql_s:.2f} s in Python"
                )


def pick(results: list[dict], scenario: str) -> dict:
    rows = [r for r in results if r["scenario"] == scenario]
    if len(rows) == 1:
        return rows[0]
    rows = sorted(rows, key=lambda r: r["seconds"])
    return rows[(len(rows) - 1) // 2]


def summary(sizes: list[dict]) -> None:
    print("\n=== Summary: seconds per evaluate.run(now), SQL queries ===")
    print(f"{'':<40}" + "".join(f"{s['gpus']:>20,} GPUs {'':>7}" for s in sizes))
    print(f"{'scenario':<40}" + "".join(f"{'seconds':>25} {'queries':>7}" for _ in sizes))
    labels = {
        "a": "(a) first evaluation",
        "b": "(b) steady minute: median (min-max)",
        "hot": "    hot GPUs notified (minute 5)",
        "c": "(c) offline ones notified",
        "d": "(d) back online",
        "e": "(e) epoch at-risk check (once an hour)",
    }
    for scenario, label in labels.items():
        cells = []
        for s in sizes:
            rows = [r for r in s["results"] if r["scenario"] == scenario]
            secs = [r["seconds"] for r in rows]
            queries = "/".join(str(x) for x in sorted({r["queries"] for r in rows}))
            if len(rows) > 1:
                seconds = f"{statistics.median(secs):.3f} ({min(secs):.3f}-{max(secs):.3f})"
            else:
                seconds = f"{secs[0]:.3f}"
            cells.append(f"{seconds:>25} {queries:>7}")
        print(f"{label:<40}" + "".join(cells))
    print("  (b): 23 queries, 25 in the minutes that also look at the daily digest")
    if len(sizes) > 1:
        same = all(
            [r["queries"] for r in sizes[0]["results"]] == [r["queries"] for r in s["results"]]
            for s in sizes[1:]
        )
        counts = [[r["queries"] for r in s["results"]] for s in sizes]
        print(f"queries of every minute identical at every size: {'yes' if same else counts}")
        a, b = sizes[0], sizes[-1]
        ratio = b["gpus"] / a["gpus"]
        med = lambda s: statistics.median(  # noqa: E731
            r["seconds"] for r in s["results"] if r["scenario"] == "b"
        )
        print(f"steady minute: x{med(b) / med(a):.1f} the time for x{ratio:.0f} the GPUs")


def slowest(sizes: list[dict], explain: bool, slow_s: float, admin_url: str) -> None:
    """The slowest queries of the biggest size's key minutes; their plans if asked or slow."""
    big = sizes[-1]
    steady = pick(big["results"], "b")
    print(f"\n=== Slowest queries at {big['gpus']:,} GPUs (Django's timing), by step ===")
    plans = []
    for scenario in ("a", "b", "c", "d", "e"):
        r = pick(big["results"], scenario)
        top = sorted(r["sql"], key=lambda q: -q[0])[:3]
        print(f"({scenario}) minute {r['minute']}:")
        for seconds, step, sql in top:
            print(f"  {seconds:7.3f} s  {step:<21} {' '.join(sql.split())[:110]}")
        if explain or (scenario == "b" and steady["seconds"] > slow_s):
            plans.extend(
                (scenario, seconds, step, sql)
                for seconds, step, sql in top[:2]
                if sql.lstrip().startswith("SELECT")
            )
    if not plans:
        return
    # The state is the one after the timeline: the plans of steady-state reads hold.
    with psycopg.connect(scratch.url_of(admin_url, DB)) as conn:
        for scenario, seconds, step, sql in plans:
            print(
                f"\n--- EXPLAIN (ANALYZE, BUFFERS) of a ({scenario}) query of {step}, "
                f"{seconds:.3f} s in the timeline:"
            )
            print(" ".join(sql.split())[:600])
            for (line,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql):
                print("   ", line if len(line) < 200 else line[:200] + " …")
            conn.rollback()


def main() -> None:
    global DB
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", type=int, default=100_000, help="the main size (100,000)")
    parser.add_argument(
        "--compare", type=int, default=10_000, help="a smaller size run first (0: none)"
    )
    parser.add_argument("--challenge-days", type=int, default=2, help="challenge history")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--db", default=DB, help=f"the database to (re)create ({DB})")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest")
    parser.add_argument("--slow", type=float, default=2.0, help="steady seconds that explain")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    DB = args.db
    if DB == "test" or not DB.replace("_", "").isalnum():
        parser.error("pick another database name (`test` is CI's)")

    broker_dir = Path(tempfile.mkdtemp(prefix="bench-alerts-broker-"))
    os.environ["DATABASE_URL"] = scratch.url_of(args.admin_url, DB)
    os.environ.setdefault("DEBUG", "true")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["CELERY_BROKER_URL"] = "filesystem://"
    os.environ["CELERY_BROKER_DIR"] = str(broker_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    sys.path.insert(0, str(ROOT))
    import django

    scratch.create(args.admin_url, DB)  # settings may open it at setup
    django.setup()
    from django.conf import settings

    print(__doc__.split("\n")[0])
    print(f"PostgreSQL: {pg_version(args.admin_url)}")
    print(
        f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"Python {platform.python_version()}, Django {django.get_version()}, DEBUG="
        f"{settings.DEBUG}; Celery broker {settings.CELERY_BROKER_URL} in {broker_dir} "
        "(no consumer)"
    )
    print(
        f"AGENT_REPORT_INTERVAL_S={settings.AGENT_REPORT_INTERVAL_S} (offline past "
        f"{3 * settings.AGENT_REPORT_INTERVAL_S} s), GPU_VERIFICATION={settings.GPU_VERIFICATION}"
    )
    from django.db import connection

    from contributors.alerts import delivery, evaluate

    probe = Probe()
    probe.install(evaluate, delivery, connection)
    sizes = []
    try:
        for gpus in sorted({g for g in (args.compare, args.gpus) if g > 0}):
            sizes.append(run_size(args, gpus, broker_dir, probe))
        summary(sizes)
        slowest(sizes, args.explain, args.slow, args.admin_url)
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        connection.close()
        if not args.keep:
            scratch.drop(args.admin_url, DB)
        shutil.rmtree(broker_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
