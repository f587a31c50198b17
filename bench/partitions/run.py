"""Converting raw samples to day partitions: how long migration 0011 takes per million rows.

    python bench/partitions/run.py [--millions 1] [--days 8] [--backwards] [--keep]
        [--admin-url postgres://postgres@127.0.0.1:5432/postgres]

Creates (drops first) a database `bench_partitions` on that server, migrates it to the schema
before the partitions (contributors 0010), loads N million 10-second samples spread over
`--days` UTC days by COPY, then times `migrate contributors 0011_sample_day_partitions` and
prints rows/s with the slowest statements. `--backwards` then times the way back. The database
is dropped at the end unless `--keep`. Prints the figures; never a timed test.
"""

import argparse
import io
import math
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench import scratch  # noqa: E402 (run as a script: the project root first)

DB = "bench_partitions"
BEFORE = "0010_public_profile"
AFTER = "0011_sample_day_partitions"
STEP_S = 10


def load(url: str, rows: int, days: int) -> int:
    """One contributor, one node per 8 GPUs, and `rows` samples ten seconds apart over the
    last `days` days (as many GPUs as that takes), by COPY. Returns the samples loaded."""
    per_gpu = days * 86400 // STEP_S
    gpus = math.ceil(rows / per_gpu)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=days - 1)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO contributors_contributor (password, is_superuser, username, first_name,"
            " last_name, email, is_staff, is_active, date_joined, display_name, leaderboard)"
            " VALUES ('!', false, 'bench', '', '', '', false, true, now(), '', 'wallet')"
            " RETURNING id"
        )
        owner = cur.fetchone()[0]
        with cur.copy(
            "COPY contributors_node (owner_id, name, hostname, agent_version, token_prefix,"
            " token_hash, created_at) FROM STDIN"
        ) as copy:
            for i in range(math.ceil(gpus / 8)):
                copy.write_row((owner, f"rig-{i}", "", "", f"p{i}", f"h{i}", start))
        cur.execute("SELECT id FROM contributors_node ORDER BY id")
        nodes = [row[0] for row in cur.fetchall()]
        with cur.copy(
            "COPY contributors_gpu (node_id, uuid, name, memory_total_mib, driver_version,"
            " pci_bus_id, first_seen_at, enabled, last_job_id, unrated) FROM STDIN"
        ) as copy:
            for i in range(gpus):
                copy.write_row((nodes[i // 8], f"GPU-{i:08d}", "NVIDIA H100 80GB HBM3", 81559,
                                "", "", start, True, "", False))  # fmt: skip
        cur.execute("SELECT id FROM contributors_gpu ORDER BY id")
        gpu_ids = [row[0] for row in cur.fetchall()]
        epoch = start.timestamp()
        count = 0
        with cur.copy(
            "COPY contributors_sample (gpu_id, ts, utilization_gpu_pct, memory_used_mib,"
            " memory_total_mib, temperature_c, power_w, job_id) FROM STDIN"
        ) as copy:
            for gpu_id in gpu_ids:
                n = min(per_gpu, rows - count)
                buf = io.StringIO()
                for k in range(n):
                    ts = datetime.fromtimestamp(epoch + STEP_S * k, UTC).isoformat()
                    buf.write(f"{gpu_id}\t{ts}\t{k % 101}\t{k % 81559}\t81559\t61.5\t300.25\t\n")
                copy.write(buf.getvalue())
                count += n
        conn.commit()
        cur.execute("ANALYZE contributors_sample")
    return count


def timed_migration(target: str) -> tuple[float, list[tuple[float, str]]]:
    """Run `migrate contributors <target>`; its seconds and its statements' (seconds, SQL)."""
    from django.core.management import call_command
    from django.db import connection

    statements = []

    def clock(execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((time.perf_counter() - began, " ".join(sql.split())[:100]))

    began = time.perf_counter()
    with connection.execute_wrapper(clock):
        call_command("migrate", "contributors", target, verbosity=0)
    return time.perf_counter() - began, statements


def report(label: str, rows: int, seconds: float, statements) -> None:
    print(f"{label}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s "
          f"({seconds / (rows / 1e6):.1f} s per million)")  # fmt: skip
    for spent, sql in sorted(statements, reverse=True)[:6]:
        print(f"  {spent:7.2f} s  {sql}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--millions", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--backwards", action="store_true", help="time the way back too")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()

    url = scratch.create(args.admin_url, DB)
    scratch.setup_django(url)
    from django.core.management import call_command
    from django.db import connection

    try:
        call_command("migrate", "contributors", BEFORE, verbosity=0)
        began = time.perf_counter()
        rows = load(url, int(args.millions * 1e6), args.days)
        print(f"loaded {rows:,} samples over {args.days} days by COPY in "
              f"{time.perf_counter() - began:.1f} s")  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(id) FROM contributors_sample")
            last_id = cursor.fetchone()[0]

        seconds, statements = timed_migration(AFTER)
        report("forwards", rows, seconds, statements)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM contributors_sample")
            assert cursor.fetchone()[0] == rows
            cursor.execute("SELECT count(*) FROM pg_inherits "
                           "WHERE inhparent = 'contributors_sample'::regclass")  # fmt: skip
            print(f"  {cursor.fetchone()[0]} partitions (days, days ahead, DEFAULT)")
            cursor.execute("SELECT nextval('contributors_sample_id_seq')")
            assert cursor.fetchone()[0] > last_id, "the ids do not go on"

        if args.backwards:
            seconds, statements = timed_migration(BEFORE)
            report("backwards", rows, seconds, statements)
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM contributors_sample")
                assert cursor.fetchone()[0] == rows
    finally:
        connection.close()
        if not args.keep:
            scratch.drop(args.admin_url, DB)


if __name__ == "__main__":
    main()
