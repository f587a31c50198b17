"""Settlement at scale: 10,000 GPUs x one epoch of 10-second samples (3.6 M samples), then
100,000 GPUs from accumulator rows alone.

    python bench/settle/run.py [--gpus 10000] [--skip-python] [--then-accumulated 100000]
        [--admin-url postgres://postgres@127.0.0.1:5432/postgres]
    python bench/settle/run.py --accumulated 100000     # the second part alone

Creates (drops first) a database `bench_settle` on that server, migrates it, loads the rows
with COPY, rebuilds the usage accumulators from them, then times settlement of the epoch side
by side: usage from the accumulators and by the one-pass SQL over every sample (which must
agree exactly), the whole `settle()` each way (usage, units, pools, ledger rows), and the
Python reference usage. Then, in a process and database (`bench_settle_accumulated`) of its
own, 100,000 GPUs settled from accumulator rows alone, with peak memory. Prints the figures;
never a timed test.
"""

import argparse
import io
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench import scratch  # noqa: E402 (run as a script: the project root first)

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(hours=1)
DB = "bench_settle"


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec (ru_maxrss
    would carry the parent's peak into the 100,000-GPU child)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_fleet(cur, gpus: int, rnd: random.Random) -> tuple[list[int], dict]:
    """Contributors, nodes, GPUs (each exempted as verified) and the attested jobs of a third
    of them: (GPU ids, GPU id -> (job id, start, end or None))."""
    cur.execute(
        "INSERT INTO contributors_contributor (password, is_superuser, username, first_name,"
        " last_name, email, is_staff, is_active, date_joined, display_name, leaderboard)"
        " SELECT '!', false, 'bench-' || i, '', '', '', false, true, now(), '', 'wallet'"
        " FROM generate_series(1, %s) i RETURNING id",
        (max(1, gpus // 8),),
    )
    owners = [row[0] for row in cur.fetchall()]
    with cur.copy(
        "COPY contributors_node (owner_id, name, hostname, agent_version, token_prefix,"
        " token_hash, created_at) FROM STDIN"
    ) as copy:
        for i, owner in enumerate(owners):
            copy.write_row((owner, f"rig-{i}", "", "", f"p{i}", f"h{i}", START))
    cur.execute("SELECT id FROM contributors_node ORDER BY id")
    nodes = [row[0] for row in cur.fetchall()]
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090",
             "NVIDIA L4", "NVIDIA RTX 6000 Ada Generation", "Some Unrated GPU"]  # fmt: skip
    with cur.copy(
        "COPY contributors_gpu (node_id, uuid, name, memory_total_mib, driver_version,"
        " pci_bus_id, first_seen_at, enabled, last_job_id, unrated) FROM STDIN"
    ) as copy:
        for i in range(gpus):
            copy.write_row(
                (nodes[i % len(nodes)], f"GPU-{i:08d}", names[i % len(names)], 81559, "",
                 "", START, i % 500 != 7, "", names[i % len(names)] == "Some Unrated GPU")
            )  # fmt: skip
    cur.execute("SELECT id FROM contributors_gpu ORDER BY id")
    gpu_ids = [row[0] for row in cur.fetchall()]
    # Verified hardware (an admin's exemption stands for a passed proof of GPU here).
    cur.execute(
        "INSERT INTO contributors_exemption (gpu_id, reason, granted_at)"
        " SELECT id, 'bench', %s FROM contributors_gpu",
        (START - timedelta(days=1),),
    )
    # A third of the GPUs run an attested job; some start or end inside the epoch.
    jobs = {}
    with cur.copy(
        "COPY rewards_job (job_id, gpu_id, kind, started_at, ended_at, created_at,"
        " updated_at) FROM STDIN"
    ) as copy:
        for gpu_id in gpu_ids[::3]:
            a = START + timedelta(seconds=rnd.choice([-600, 0, 900]))
            b = rnd.choice([None, END, START + timedelta(seconds=2700)])
            jobs[gpu_id] = (f"job-{gpu_id}", a, b)
            copy.write_row((jobs[gpu_id][0], gpu_id, "training", a, b, START, START))
    return gpu_ids, jobs


def load_accumulated(url: str, gpus: int, seed: int = 8) -> int:
    """The fleet of `load` with, instead of raw samples, the accumulator rows its drains would
    have written for a fully covered hour (10-second samples, utilization 0-100, memory used
    0-81,559 MiB): one row per GPU, busy inside its job's window. Returns the rows."""
    rnd = random.Random(seed)
    hour = 3600 * 10**6
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        gpu_ids, jobs = load_fleet(cur, gpus, rnd)
        with cur.copy(
            'COPY rewards_usageaccumulator (gpu_id, start, "end", max_gap_s, job_id,'
            " covered_us, first_us, last_us, busy_us, busy_util_us, busy_null_us, job_from_us,"
            " job_until_us, avail_mib_us, busy_avail_mib_us, min_avail_mib, max_avail_mib,"
            " dirty) FROM STDIN"
        ) as copy:
            for gpu_id in gpu_ids:
                name, a, b = jobs.get(gpu_id, ("", None, None))
                ja = None if a is None else int((a - START).total_seconds()) * 10**6
                jb = None if b is None else int((b - START).total_seconds()) * 10**6
                busy = 0 if ja is None else max(0, min(hour, jb or hour) - max(0, ja))
                util = rnd.randrange(101) * busy
                lo, hi = rnd.randrange(1000), 81559 - rnd.randrange(1000)
                avail = hour * rnd.randrange(lo, hi)
                copy.write_row((gpu_id, START, END, 30, name, hour, 0, hour, busy, str(util), 0,
                                ja, jb, avail, avail * busy // hour, lo, hi, False))  # fmt: skip
        conn.commit()
        cur.execute("ANALYZE")
    return len(gpu_ids)


def load(url: str, gpus: int, seed: int = 8) -> int:
    """Contributors, nodes, GPUs, jobs and 10-second samples, by COPY. Returns samples loaded."""
    rnd = random.Random(seed)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        gpu_ids, jobs = load_fleet(cur, gpus, rnd)
        jobs = {gpu_id: name for gpu_id, (name, _a, _b) in jobs.items()}
        count = 0
        with cur.copy(
            "COPY contributors_sample (gpu_id, ts, utilization_gpu_pct, memory_used_mib,"
            " memory_total_mib, job_id) FROM STDIN"
        ) as copy:
            for gpu_id in gpu_ids:
                offset = rnd.randrange(10)
                job = jobs.get(gpu_id, "")
                buf = io.StringIO()
                base = START + timedelta(seconds=offset - 10)
                for k in range(361):
                    if rnd.random() < 0.01:  # a dropped sample now and then: a gap
                        continue
                    ts = base + timedelta(seconds=10 * k)
                    util = "\\N" if rnd.random() < 0.02 else str(rnd.randrange(101))
                    buf.write(
                        f"{gpu_id}\t{ts.isoformat()}\t{util}\t{rnd.randrange(81559)}\t81559\t"
                        f"{job}\n"
                    )
                    count += 1
                copy.write(buf.getvalue())
        conn.commit()
        cur.execute("ANALYZE")
    return count


def unsettle() -> None:
    """Forget the settled epoch (its ledger rows, held-out rows and day totals) to settle again."""
    from rewards.models import EarningDay, Epoch, HeldOut, RewardEntry

    RewardEntry.objects.all().delete()
    HeldOut.objects.all().delete()
    EarningDay.objects.all().delete()
    Epoch.objects.all().delete()


def settle_accumulated(url: str, gpus: int) -> None:
    """Settle an epoch of `gpus` GPUs from their accumulator rows: usage, then the whole
    settlement (units, pools, ledger rows, day totals)."""
    from django.core.management import call_command

    from rewards import accumulators, settlement
    from rewards.models import RewardPolicy

    call_command("migrate", verbosity=0)
    t = time.perf_counter()
    rows = load_accumulated(url, gpus)
    print(f"loaded {gpus:,} GPUs and {rows:,} accumulator rows by COPY in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    window = settlement.Window(START, END, RewardPolicy.default())
    now = END + timedelta(hours=1)
    gap = timedelta(seconds=window.policy.max_gap_s)
    rss0 = peak_rss_mib()
    t = time.perf_counter()
    outcome = accumulators.usage(START, END, gap, now)
    print(f"usage from accumulators:   {time.perf_counter() - t:6.2f} s  ({outcome.rows:,} "
          f"rows, {outcome.from_raw} GPUs from raw samples)")  # fmt: skip
    t = time.perf_counter()
    epoch = settlement.settle(window, now, method="accumulators")
    print(f"settle() from accumulators: {time.perf_counter() - t:5.2f} s  "
          f"({epoch.entries.count():,} entries, {epoch.held_out_count} held out, method "
          f"{epoch.method}); peak RSS {peak_rss_mib():.0f} MiB (was {rss0:.0f})")  # fmt: skip
    unsettle()
    tracemalloc.start()
    settlement.settle(window, now, method="accumulators")
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  Python heap peak while settling: {traced_peak / 2**20:.0f} MiB (tracemalloc)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database")
    parser.add_argument("--skip-python", action="store_true", help="skip the reference path")
    parser.add_argument(
        "--accumulated",
        type=int,
        metavar="GPUS",
        help="instead: settle GPUS GPUs from accumulator rows alone (no raw samples loaded)",
    )
    parser.add_argument(
        "--then-accumulated",
        type=int,
        default=100_000,
        metavar="GPUS",
        help="after the comparison, settle GPUS GPUs from accumulator rows alone (0: skip)",
    )
    args = parser.parse_args()

    name = f"{DB}_accumulated" if args.accumulated else DB
    url = (
        scratch.url_of(args.admin_url, name) if args.reuse else scratch.create(args.admin_url, name)
    )
    scratch.setup_django(url)
    from django.core.management import call_command

    if args.accumulated:
        settle_accumulated(url, args.accumulated)
        return
    if args.reuse:
        unsettle()
    else:
        call_command("migrate", verbosity=0)
        t = time.perf_counter()
        samples = load(url, args.gpus)
        print(f"loaded {samples:,} samples of {args.gpus:,} GPUs by COPY in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip

    from rewards import settlement
    from rewards.models import RewardPolicy
    from rewards.usage import database_usage, sql_usage

    window = settlement.Window(START, END, RewardPolicy.default())
    now = END + timedelta(hours=1)
    gap = timedelta(seconds=window.policy.max_gap_s)

    # The accumulators, as the drains would have written them: rebuilt from the raw samples
    # (what `manage.py rebuild_usage` does on an upgraded installation).
    from rewards import accumulators

    if not args.reuse:
        t = time.perf_counter()
        rows = accumulators.rebuild(START - timedelta(hours=1))
        print(f"accumulators rebuilt from raw samples: {rows:,} rows in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    t = time.perf_counter()
    outcome = accumulators.usage(START, END, gap, now)
    acc_s = time.perf_counter() - t
    print(f"usage from accumulators:   {acc_s:6.2f} s  ({outcome.rows:,} rows, "
          f"{len(outcome.usage):,} GPUs, {outcome.from_raw:,} of them from raw samples)"
    )  # fmt: skip

    rss0 = peak_rss_mib()
    t = time.perf_counter()
    fast = sql_usage(START, END, gap, now)
    sql_s = time.perf_counter() - t
    print(f"one-pass SQL usage:        {sql_s:6.2f} s  ({len(fast):,} GPUs)")
    same = {k: u.as_tuple() for k, u in outcome.usage.items() if any(u.as_tuple())} == {
        k: u.as_tuple() for k, u in fast.items()
    }
    print(f"  accumulators equal to the one-pass SQL: {same}; SQL / accumulators = "
          f"{sql_s / acc_s:.1f}x")  # fmt: skip
    assert same

    t = time.perf_counter()
    epoch = settlement.settle(window, now, method="accumulators")
    print(f"settle() from accumulators: {time.perf_counter() - t:5.2f} s  "
          f"({epoch.entries.count():,} entries, {epoch.held_out_count} held out, "
          f"method {epoch.method}); peak RSS {peak_rss_mib():.0f} MiB")  # fmt: skip
    unsettle()

    t = time.perf_counter()
    epoch = settlement.settle(window, now, method="sql")
    settle_s = time.perf_counter() - t
    print(f"settle() on PostgreSQL:    {settle_s:6.2f} s  (usage + units + pools + "
          f"{epoch.entries.count():,} entries, {epoch.held_out_count} held out); "
          f"peak RSS {peak_rss_mib():.0f} MiB (was {rss0:.0f} before settling)")  # fmt: skip
    # Again, from scratch, under tracemalloc (which slows it) for the Python heap's peak.
    unsettle()
    tracemalloc.start()
    epoch = settlement.settle(window, now, method="sql")
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  Python heap peak while settling: {traced_peak / 2**20:.0f} MiB (tracemalloc)")
    t = time.perf_counter()
    settlement.settle(settlement.Window(START, END, RewardPolicy.default()), now)
    print(f"settle() again (no-op):    {time.perf_counter() - t:6.3f} s")
    paid = epoch.compute_paid_wei + epoch.compute_unallocated_wei
    assert paid == window.policy.compute_pool_wei
    assert epoch.idle_paid_wei + epoch.idle_unallocated_wei == window.policy.idle_pool_wei

    if not args.skip_python:
        t = time.perf_counter()
        reference = database_usage(START, END, gap, now)
        py_s = time.perf_counter() - t
        same = {k: u.as_tuple() for k, u in reference.items()} == {
            k: u.as_tuple() for k, u in fast.items()
        }
        print(f"Python reference usage:    {py_s:6.2f} s  (equal to SQL: {same}); "
              f"process peak RSS {peak_rss_mib():.0f} MiB")  # fmt: skip
        assert same

    if args.then_accumulated:
        # A process of its own: its own database, and its own peak memory.
        print(f"\n{args.then_accumulated:,} GPUs from accumulator rows alone:")
        sys.stdout.flush()
        subprocess.run(
            [sys.executable, __file__, "--accumulated", str(args.then_accumulated),
             "--admin-url", args.admin_url],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
