"""Public figures at scale: compute_all, public pages and API, manifests, tax exports.

`rewards.public.store.compute_all()`, the public pages and API, epoch manifests and tax exports
on 10,000 GPUs with 7 days of settled hourly epochs (and 1,000 GPUs first, to see the scaling).

    cd /work/main && DEBUG=true .venv/bin/python bench/public/run.py   # 1,000 then 10,000 GPUs
    .venv/bin/python bench/public/run.py --gpus 200 --days 1 --compare 0   # a quick check
    .venv/bin/python bench/public/run.py --explain                         # + plans of the slowest
    .venv/bin/python bench/public/run.py --compare 0 --rollup-days 92 --try-index  # history

Options: --gpus N (10,000), --days D (7), --compare M (1,000, run first; 0: none), --rollup-days
H (--days: hourly rollups of the H days up to now, those before the epochs fully online),
--try-index (then time compute_all again with an index on GpuHour(start), created in the bench
database only), --requests R (50), --db NAME (bench_public), --admin-url URL, --cache-url URL,
--explain, --slow-s S (10), --slow-ms MS (200), --keep.

Needs PostgreSQL at 127.0.0.1:5432 (user `postgres`, trust; `--admin-url` or BENCH_ADMIN_URL to
change). For each size it drops and creates the database `bench_public` (dropped again at the
end unless --keep; never `test`, which CI uses), migrates it and loads by COPY, relative to the
wall clock (the beat task computes "now"):

- contributors with about 5 GPUs each (nodes of 8, of 4, two of 2, or 1 + 3), and one large
  operator (contributor 1) with 1 % of the GPUs in nodes of 8; a payout wallet each, 10 %
  listed by display name, 2 % not listed;
- GPUs of five catalogued models; live state as the ingestion worker keeps it (last_seen_at,
  last sample 0-19 s ago); 1 % of the nodes silent for the last 2 hours, with their GPUs;
- one settled epoch per hour over --days days, as `rewards.settlement` writes it: a compute
  and/or an idle `RewardEntry` per GPU with the `inputs` of `_compute_inputs` / `_idle_inputs`
  (covered_seconds, utilization_pct_seconds, ...), pools split to the wei (largest remainder,
  ties by uuid, so that `rewards/verify_epoch.py` accepts every manifest); 1 % of the GPUs held
  out of every epoch (`HeldOut`, five reasons; the disabled ones are disabled); `EarningDay` per
  contributor and UTC day, equal to the entries' sums (checked after loading);
- `GpuHour` rollups per GPU and hour up to the current hour (the current one partial), over
  --rollup-days (the portal keeps them for good);
- proof-of-GPU challenges every 6 hours per GPU over the same days, ~1 % failed;
- a `TokenPrice` (USD) per hour from a day before the first epoch.

Measured, per size:
1. `rewards.public.store.compute_all()` (the beat task `rewards.compute_public_stats`), once the
   live state is refreshed as the ingestion worker keeps it (loading takes a while): a
   warm-up whose cache entries are then deleted, a first run with the uptime day sums not
   cached, then 3 runs with them cached: wall time, SQL queries (CaptureQueriesContext), time
   per step (network, leaderboard, uptime), the slowest statements.
2. GET /api/v1/network, /api/v1/leaderboard?period=30d&by=total, /network/, /leaderboard/ with
   django.test.Client (anonymous): median (and p95) of --requests requests after 2 warm-ups,
   queries per request, bytes.
3. `rewards.manifests.publish(id)` of the newest epoch (all GPUs); GET its manifest.json and
   manifest.csv (median of 5); the standalone verifier `python rewards/verify_epoch.py FILE
   --sha256 DIGEST` as a subprocess.
4. For the contributor with the most GPUs (signed in with force_login): GET
   /rewards/export.csv and /rewards/export-universal.csv, whole streams (median of 3).

The cache is Redis (as in production) at --cache-url, keys under a prefix of this process
(deleted at the end), or a temporary file cache if Redis does not answer; the Celery broker is
kombu's filesystem transport in a temporary folder that nothing consumes. With --explain, or
when compute_all takes over --slow-s seconds or a request over --slow-ms, EXPLAIN (ANALYZE,
BUFFERS) of the slowest statements. Never a timed test.
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench import scratch  # noqa: E402 (run as a script: the project root first)

DB = "bench_public"
NULL = "\\N"
EPOCH = timedelta(hours=1)
GRACE = timedelta(minutes=15)
# (NVML name, memory MiB, board power W): all in the seeded catalog.
MODELS = [
    ("NVIDIA H100 80GB HBM3", 81559, 700),
    ("NVIDIA A100-SXM4-80GB", 81920, 400),
    ("NVIDIA GeForce RTX 4090", 24564, 450),
    ("NVIDIA L4", 23034, 72),
    ("NVIDIA RTX 6000 Ada Generation", 49140, 300),
]
SHAPES = [[8], [4], [2, 2], [1, 3]]  # GPUs per node, by contributor: 5 on average
HELD_REASONS = [
    ("unverified", "No passed proof-of-GPU challenge for this model and memory."),
    ("verification_failed", "Its last challenge failed: a revealed row is not the product."),
    ("probe_failed", "The network's scheduler could not allocate the memory it offers."),
    ("flagged", "Open flag: implausible telemetry."),
    ("disabled", "This GPU was disabled by its owner."),
]
SILENT_FOR = timedelta(hours=2)
INDEX = "bench_gpuhour_start"  # --try-index
STEPS = [
    ("network", "_epochs"), ("network", "_memory"), ("network", "_models"),
    ("network", "_verification"), ("network", "_manifests"), ("leaderboard", "online"),
    ("uptime", "since"), ("uptime", "by_day"), ("leaderboard", "earnings"),
    ("leaderboard", "labels"),
]  # fmt: skip


# --- database -----------------------------------------------------------------------------------


def pg_version(admin_url: str) -> str:
    with psycopg.connect(admin_url) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name IN"
                " ('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost',"
                " 'jit', 'max_parallel_workers_per_gather')"
            ).fetchall()
        )
    return version + "\n  " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))


# --- loading ------------------------------------------------------------------------------------


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


def _dec(scaled: int, places: int) -> str:
    """scaled / 10**places as an exact decimal, no trailing zeros (`rewards.wei.decimal_string`)."""
    whole, rest = divmod(scaled, 10**places)
    if not rest:
        return str(whole)
    return f"{whole}.{rest:0{places}d}".rstrip("0")


def _half_up(numerator: int, denominator: int, places: int) -> str:
    """numerator / denominator rounded half up to `places` decimals (`rounded_decimal`)."""
    scaled = (2 * numerator * 10**places + denominator) // (2 * denominator)
    return _dec(scaled, places)


def _split(pool: int, units: list[int], keys: list[str]) -> list[int]:
    """Settlement's split: floor(pool * u / Σu), then the leftover wei one each by largest
    remainder, ties by key (the GPU's uuid) ascending."""
    total = sum(units)
    if not total or not pool:
        return [0] * len(units)
    amounts, remainders = [], []
    for u in units:
        q, r = divmod(pool * u, total)
        amounts.append(q)
        remainders.append(r)
    leftover = pool - sum(amounts)
    for i in sorted(range(len(units)), key=lambda i: (-remainders[i], keys[i]))[:leftover]:
        amounts[i] += 1
    return amounts


class Writer:
    """COPY text into one table, in large writes."""

    def __init__(self, cur, table: str, columns: str):
        self.manager = cur.copy(f"COPY {table} ({columns}) FROM STDIN")
        self.copy = self.manager.__enter__()
        self.parts: list[str] = []
        self.size = self.rows = 0

    def add(self, text: str, rows: int = 1) -> None:
        self.parts.append(text)
        self.size += len(text)
        self.rows += rows
        if self.size > 8 << 20:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.copy.write("".join(self.parts))
            self.parts, self.size = [], 0

    def close(self) -> int:
        self.flush()
        self.manager.__exit__(None, None, None)
        return self.rows


def deferred_indexes(cur, tables) -> list[str]:
    """Drop the tables' unique constraints and secondary indexes; the statements that rebuild
    them (a sort after the rows instead of an insert per row)."""
    rebuild = []
    for table in tables:
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'u'",
            (table,),
        )
        for name, definition in cur.fetchall():
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        cur.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
            (table,),
        )
        for name, definition in cur.fetchall():
            cur.execute(f"DROP INDEX {name}")
            rebuild.append(definition)
    return rebuild


def fleet(gpus: int) -> list[list[int]]:
    """GPUs per node, per contributor: contributor 1 the large operator."""
    big = min(gpus, max(8, gpus // 100))
    owners = [[8] * (big // 8) + ([big % 8] if big % 8 else [])]
    total = big
    while total < gpus:
        shape = list(SHAPES[len(owners) % len(SHAPES)])
        if total + sum(shape) > gpus:  # the last one takes what is left
            shape, left = [], gpus - total
            while left:
                shape.append(min(left, 8))
                left -= shape[-1]
        owners.append(shape)
        total += sum(shape)
    return owners


def load(url: str, gpus: int, days: int, rollup_days: int, now: datetime, log=print) -> dict:
    """Every row, by COPY (foreign-key triggers off, big tables' indexes built afterwards)."""
    import random

    from rewards.catalog import Catalog
    from rewards.models import RewardPolicy

    rnd = random.Random(20260302)
    policy = RewardPolicy.default()
    compute_pool, idle_pool = policy.compute_pool_wei, policy.idle_pool_wei
    catalog = Catalog.load()
    weights = {name: int(catalog.weight_for(name) * 10_000) for name, _, _ in MODELS}
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    last_end = (now - GRACE).replace(minute=0, second=0, microsecond=0)
    n_epochs = days * 24
    epoch_starts = [last_end - (n_epochs - k) * EPOCH for k in range(n_epochs)]
    first_hour = epoch_starts[0]
    hours = int((this_hour - first_hour) / EPOCH) + 1  # up to the current hour
    silent_since = this_hour - SILENT_FOR
    created = first_hour - timedelta(days=30)
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    def done(name: str, rows: int) -> None:
        nonlocal t0
        seconds[name] = time.perf_counter() - t0
        counts[name] = rows
        log(f"  {name:<34} {rows:>11,} rows {seconds[name]:7.1f} s")
        t0 = time.perf_counter()

    owners = fleet(gpus)
    # Per GPU: (id, node id, owner, uuid, model index, profile, held reason index or -1, silent)
    gpu_rows = []
    node_rows = []  # (id, owner, silent)
    for owner, shape in enumerate(owners, start=1):
        for n in shape:
            node_id = len(node_rows) + 1
            silent = node_id % 100 == 37
            node_rows.append((node_id, owner, silent))
            for k in range(n):
                gpu_id = len(gpu_rows) + 1
                held = (gpu_id // 100) % len(HELD_REASONS) if gpu_id % 100 == 42 else -1
                profile = "idle" if gpu_id % 20 < 8 else "busy" if gpu_id % 20 >= 17 else "mixed"
                model = (node_id + (k if owner != 1 else 0)) % len(MODELS)
                gpu_rows.append(
                    (gpu_id, node_id, owner, f"GPU-{uuid.UUID(int=gpu_id * 2654435761 + 7)}",
                     model, profile, held, silent)
                )  # fmt: skip

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no FK triggers while loading
        cur.execute("SET maintenance_work_mem = '512MB'")
        joined = _ts(created)
        w = Writer(
            cur,
            "contributors_contributor",
            "id, password, is_superuser, username, first_name, last_name, email, is_staff,"
            " is_active, date_joined, display_name, leaderboard",
        )
        addresses = [
            f"0x{(owner * 0x9E3779B97F4A7C15 + 0x1234567) % 2**160:040x}"
            for owner in range(len(owners) + 1)
        ]
        for owner in range(1, len(owners) + 1):
            named = owner == 1 or owner % 10 == 3
            choice = "hidden" if owner % 50 == 7 else "name" if named else "wallet"
            w.add(
                f"{owner}\t!\tf\t{addresses[owner]}\t\t\t\tf\tt\t{joined}\t"
                f"{f'farm-{owner}' if named else ''}\t{choice}\n"
            )
        w.close()
        w = Writer(cur, "contributors_wallet", "contributor_id, address, linked_at, is_payout")
        for owner in range(1, len(owners) + 1):
            w.add(f"{owner}\t{addresses[owner]}\t{joined}\tt\n")
        w.close()
        w = Writer(
            cur,
            "contributors_node",
            "id, owner_id, name, hostname, agent_version, token_prefix, token_hash, created_at,"
            " last_seen_at",
        )
        for node_id, owner, silent in node_rows:
            seen = (
                silent_since - timedelta(seconds=5)
                if silent
                else now - timedelta(seconds=node_id % 20)
            )
            w.add(
                f"{node_id}\t{owner}\trig-{node_id}\thost-{node_id}\t0.9.0\tp{node_id:08d}\t"
                f"h{node_id:063d}\t{joined}\t{_ts(seen)}\n"
            )
        w.close()
        w = Writer(
            cur,
            "contributors_gpu",
            "id, node_id, uuid, name, memory_total_mib, driver_version, pci_bus_id,"
            " first_seen_at, last_seen_at, enabled, unrated, last_job_id, last_sample_at,"
            " last_utilization_gpu_pct, last_memory_used_mib, last_memory_total_mib,"
            " last_temperature_c, last_power_w",
        )
        for gpu_id, node_id, _owner, gpu_uuid, model, profile, held, silent in gpu_rows:
            name, memory, power = MODELS[model]
            seen = (
                silent_since - timedelta(seconds=5)
                if silent
                else now - timedelta(seconds=gpu_id % 20)
            )
            busy = profile == "busy" or (profile == "mixed" and gpu_id % 2)
            util = 60 + gpu_id % 40 if busy else gpu_id % 3
            used = int(memory * (0.3 + (gpu_id % 60) / 100)) if busy else 300 + gpu_id % 1500
            enabled = "f" if held >= 0 and HELD_REASONS[held][0] == "disabled" else "t"
            w.add(
                f"{gpu_id}\t{node_id}\t{gpu_uuid}\t{name}\t{memory}\t550.54.15\t"
                f"00000000:{(gpu_id % 8) + 1:02X}:00.0\t{joined}\t{_ts(seen)}\t{enabled}\tf\t"
                f"{f'job-{gpu_id}' if busy else ''}\t{_ts(seen)}\t{util}\t{used}\t{memory}\t"
                f"{35 + gpu_id % 45}\t{power * (0.7 if busy else 0.15):.1f}\n"
            )
        w.close()
        done("contributors, wallets, nodes, GPUs", len(owners) + len(node_rows) + len(gpu_rows))

        rebuild = deferred_indexes(
            cur, ("rewards_rewardentry", "contributors_gpuhour", "contributors_challenge")
        )
        # --- epochs, ledger, held out, day totals, and the hours they cover ---
        entry = Writer(
            cur,
            "rewards_rewardentry",
            "epoch_id, gpu_id, contributor_id, kind, units, amount_wei, inputs, created_at",
        )
        held_rows: list[str] = []  # written after the entries: one COPY at a time
        epoch_rows = []
        day_sums: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
        covered_at: dict[int, list[int]] = {}  # gpu id → covered seconds per epoch (for rollups)
        pool_c, pool_i = str(compute_pool), str(idle_pool)
        for k, start in enumerate(epoch_starts):
            epoch_id = k + 1
            end = start + EPOCH
            day = start.date().isoformat()
            settled = _ts(end + GRACE + timedelta(seconds=40))
            compute, idle = [], []  # per entry: (gpu row, units scaled, text pieces)
            held_here = 0
            for row in gpu_rows:
                gpu_id, _node, owner, gpu_uuid, model, profile, held, silent = row
                if silent and start >= silent_since:
                    covered_at.setdefault(gpu_id, []).append(0)
                    continue
                covered = 3600 if rnd.random() > 0.03 else 3600 - 10 * rnd.randint(1, 120)
                covered_at.setdefault(gpu_id, []).append(covered)
                if held >= 0:
                    reason, detail = HELD_REASONS[held]
                    held_rows.append(
                        f"{epoch_id}\t{gpu_id}\t{owner}\t{reason}\t{detail}\t{covered}\n"
                    )
                    held_here += 1
                    continue
                r = rnd.random()
                if profile == "idle":
                    busy = 0 if r < 0.75 else 10 * rnd.randint(1, 90)
                elif profile == "busy":
                    busy = covered if r < 0.8 else covered - 10 * rnd.randint(1, 60)
                else:
                    busy = 10 * rnd.randint(0, covered // 10)
                idle_s = covered - busy
                if busy:
                    null = 10 * rnd.randint(1, 3) if busy >= 40 and rnd.random() < 0.05 else 0
                    ups = (busy - null) * rnd.randint(300, 1000) // 10  # Σ s × util %
                    w4 = weights[MODELS[model][0]]
                    compute.append(
                        (row, ups * w4,
                         f'{{"seconds": "{busy}", "covered_seconds": "{covered}", '
                         f'"avg_utilization_pct": "{_half_up(ups, busy, 6)}", '
                         f'"utilization_pct_seconds": "{ups}", '
                         f'"null_utilization_seconds": "{null}", "weight": "{_dec(w4, 4)}", '
                         f'"gib_seconds": null, "pool_wei": "{pool_c}", ')
                    )  # fmt: skip
                if idle_s:
                    memory = MODELS[model][1]
                    available = memory - rnd.randint(200, 2500)
                    mib_seconds = idle_s * available
                    idle.append(
                        (row, mib_seconds,
                         f'{{"seconds": "{idle_s}", "covered_seconds": "{covered}", '
                         f'"avg_utilization_pct": null, "weight": null, '
                         f'"gib_seconds": "{_dec(mib_seconds * 9765625, 10)}", '
                         f'"committed_mib": {memory}, "pool_wei": "{pool_i}", ')
                    )  # fmt: skip
            c_units = [u for _, u, _ in compute]
            i_units = [u for _, u, _ in idle]
            c_total, i_total = sum(c_units), sum(i_units)
            c_paid = _split(compute_pool, c_units, [r[0][3] for r in compute])
            i_paid = _split(idle_pool, i_units, [r[0][3] for r in idle])
            c_total_s = _dec(c_total, 6)  # compute units = Σ s × util % / 100 × weight: 6 places
            i_total_s = _dec(i_total * 9765625, 10)  # idle units = MiB·s / 1024: 10 places
            parts = []
            for (row, u, head), amount in zip(compute, c_paid, strict=True):
                units = _dec(u, 6)
                share = _half_up(u, c_total, 18) if c_total else "0"
                parts.append(
                    f"{epoch_id}\t{row[0]}\t{row[2]}\tcompute\t{units}\t{amount}\t{head}"
                    f'"total_units": "{c_total_s}", "share": "{share}", "units": "{units}"}}\t'
                    f"{settled}\n"
                )
                day_sums[(row[2], day)][0] += amount
            for (row, u, head), amount in zip(idle, i_paid, strict=True):
                units = _dec(u * 9765625, 10)
                share = _half_up(u, i_total, 18) if i_total else "0"
                parts.append(
                    f"{epoch_id}\t{row[0]}\t{row[2]}\tidle\t{units}\t{amount}\t{head}"
                    f'"total_units": "{i_total_s}", "share": "{share}", "units": "{units}"}}\t'
                    f"{settled}\n"
                )
                day_sums[(row[2], day)][1] += amount
            entry.add("".join(parts), len(parts))
            paid_gpus = len({r[0][0] for r in compute} | {r[0][0] for r in idle})
            cp, ip = sum(c_paid), sum(i_paid)
            epoch_rows.append(
                f"{epoch_id}\t{_ts(start)}\t{_ts(end)}\tsettled\t{policy.grace_s}\t"
                f"{policy.max_gap_s}\t{compute_pool}\t{idle_pool}\t{c_total_s}\t{i_total_s}\t"
                f"{cp}\t{ip}\t{compute_pool - cp}\t{idle_pool - ip}\t{paid_gpus}\t{held_here}\t"
                f"sql\t{settled}\n"
            )
        counts["reward entries"] = entry.close()
        w = Writer(
            cur,
            "rewards_heldout",
            "epoch_id, gpu_id, contributor_id, reason, detail, covered_seconds",
        )
        for text in held_rows:
            w.add(text)
        counts["held-out rows"] = w.close()
        w = Writer(
            cur,
            "rewards_epoch",
            'id, start, "end", status, grace_s, max_gap_s, compute_pool_wei, idle_pool_wei,'
            " compute_units, idle_units, compute_paid_wei, idle_paid_wei,"
            " compute_unallocated_wei, idle_unallocated_wei, gpu_count, held_out_count, method,"
            " settled_at",
        )
        for text in epoch_rows:
            w.add(text)
        counts["epochs"] = w.close()
        w = Writer(cur, "rewards_earningday", "contributor_id, day, compute_wei, idle_wei")
        for (owner, day), (c, i) in sorted(day_sums.items()):
            w.add(f"{owner}\t{day}\t{c}\t{i}\n")
        counts["earning days"] = w.close()
        done("epochs, entries, held out, day totals", counts["reward entries"])

        # --- hourly rollups: older hours (--rollup-days), the epochs' coverage, the hours since ---
        w = Writer(
            cur,
            "contributors_gpuhour",
            "gpu_id, start, samples, online_s, n_util, sum_util, max_util, sum_mem, max_mem,"
            " n_temp, sum_temp, max_temp, n_power, sum_power, max_power",
        )
        older = max(0, rollup_days - days) * 24  # hours of rollups before the first epoch
        rollup_first = first_hour - older * EPOCH
        hour_text = [_ts(rollup_first + h * EPOCH) for h in range(older + hours)]
        elapsed = int((now - this_hour).total_seconds())

        def tail(n: int, online: int, util: float, mem: float, power: int) -> str:
            return (
                f"\t{n}\t{online}\t{n}\t{n * util:.1f}\t{min(100.0, util * 1.4):.0f}\t"
                f"{n * mem:.0f}\t{int(mem * 1.2)}\t{n}\t{n * 55.0:.1f}\t71\t{n}\t"
                f"{n * power * 0.5:.1f}\t{power * 0.8:.1f}\n"
            )

        # Hour after hour, every GPU's row of the hour: the order the rollup worker writes them
        # in, so the table's physical order (and the planner's correlation) is by time.
        per_gpu = []
        for gpu_id, _node, _owner, _uuid, model, profile, _held, silent in gpu_rows:
            _name, memory, power = MODELS[model]
            util = 70.0 if profile == "busy" else 35.0 if profile == "mixed" else 2.0
            mem = memory * (0.6 if profile == "busy" else 0.3 if profile == "mixed" else 0.02)
            full = tail(360, 3600, util, mem, power)
            per_gpu.append((gpu_id, full, util, mem, power, covered_at[gpu_id], silent))
        for h in range(older + hours):
            start = rollup_first + h * EPOCH
            e = h - older  # the epoch's index, from the first epoch
            rows = []
            for gpu_id, full, util, mem, power, per_epoch, silent in per_gpu:
                if e < 0:
                    online = 3600
                elif silent and start >= silent_since:
                    continue
                elif e < len(per_epoch):
                    online = per_epoch[e]
                elif start == this_hour:
                    online = elapsed
                else:
                    online = 3600
                if not online:
                    continue
                text = (
                    full if online == 3600 else tail(max(1, online // 10), online, util, mem, power)
                )
                rows.append(f"{gpu_id}\t{hour_text[h]}{text}")
            w.add("".join(rows), len(rows))
        counts["gpu hours"] = w.close()
        done("hourly rollups", counts["gpu hours"])

        # --- challenges: every 6 hours per GPU over the days loaded, ~1 % failed ---
        w = Writer(
            cur,
            "contributors_challenge",
            "public_id, gpu_id, node_id, trigger, claimed_name, claimed_memory_mib, seed, n,"
            " rounds, checks, expected_ops_per_s, commit_within_s, status, reason, detail,"
            " issued_at, delivered_at, committed_at, revealed_at, decided_at, root,"
            " reveal_rows, revealed, measured_ops_per_s",
        )
        zero = "0" * 64
        decided_rows = []  # (decided, row): written in the order they were decided
        for gpu_id, node_id, _owner, _uuid, model, _profile, _held, silent in gpu_rows:
            name, memory, _power = MODELS[model]
            offset = timedelta(seconds=(gpu_id * 7919) % 21600)
            for k in range(days * 4):
                decided = now - offset - k * timedelta(hours=6)
                if silent and decided >= silent_since:
                    continue
                failed = (gpu_id * 7 + k) % 100 == 0
                issued = decided - timedelta(seconds=40)
                text = (
                    f"{uuid.UUID(int=rnd.getrandbits(128))}\t{gpu_id}\t{node_id}\tperiodic\t"
                    f"{name}\t{memory}\t{zero}\t8192\t64\t16\t1.2e14\t30\t"
                    f"{'failed' if failed else 'passed'}\t{'wrong_row' if failed else ''}\t\t"
                    f"{_ts(issued)}\t{_ts(issued)}\t{_ts(decided - timedelta(seconds=20))}\t"
                    f"{_ts(decided - timedelta(seconds=5))}\t{_ts(decided)}\t{zero}\t[]\t[]\t"
                    f"{'3.1e13' if failed else '1.1e14'}\n"
                )
                decided_rows.append((decided, text))
        decided_rows.sort(key=lambda row: row[0])
        for _, text in decided_rows:
            w.add(text)
        counts["challenges"] = w.close()
        # --- prices: USD per hour, from a day before the first epoch to now ---
        w = Writer(
            cur,
            "rewards_tokenprice",
            "currency, at, price, source, feed, round_id, notes, created_at",
        )
        feed = "0x" + "ab" * 20
        at = first_hour - timedelta(days=1)
        rounds = 0
        while at <= now:
            rounds += 1
            price = 42_000 + (rounds * 7919) % 9000  # 0.042-0.051 USD
            w.add(f"USD\t{_ts(at)}\t0.{price:07d}\tfeed\t{feed}\t{rounds}\t\t{_ts(at)}\n")
            at += EPOCH
        counts["token prices"] = w.close()
        done("challenges, token prices", counts["challenges"] + counts["token prices"])

        for statement in rebuild:
            cur.execute(statement)
        for table in ("contributors_contributor", "contributors_node", "contributors_gpu",
                      "rewards_epoch"):  # fmt: skip
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"  # noqa: S608
            )
        conn.commit()
        done("indexes and constraints", 0)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        # The day totals must equal the ledger (rewards/ledger.py): checked once, in SQL.
        differ = conn.execute(
            "SELECT count(*) FROM rewards_earningday d FULL JOIN ("
            " SELECT e.contributor_id, (ep.start AT TIME ZONE 'UTC')::date AS day,"
            "  sum(e.amount_wei) FILTER (WHERE kind = 'compute') AS c,"
            "  sum(e.amount_wei) FILTER (WHERE kind = 'idle') AS i"
            " FROM rewards_rewardentry e JOIN rewards_epoch ep ON ep.id = e.epoch_id"
            " GROUP BY 1, 2) s ON s.contributor_id = d.contributor_id AND s.day = d.day"
            " WHERE d.id IS NULL OR s.day IS NULL OR d.compute_wei <> coalesce(s.c, 0)"
            "  OR d.idle_wei <> coalesce(s.i, 0)"
        ).fetchone()[0]
        sizes = dict(
            conn.execute(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN"
                " ('rewards_rewardentry', 'contributors_gpuhour', 'contributors_challenge')"
            ).fetchall()
        )
    done("vacuum analyze, day totals checked", 0)
    assert differ == 0, f"{differ} day totals differ from the ledger"
    counts.update(
        contributors=len(owners),
        nodes=len(node_rows),
        gpus=len(gpu_rows),
        big_gpus=sum(owners[0]),
        silent_gpus=sum(1 for g in gpu_rows if g[7]),
        held_gpus=sum(1 for g in gpu_rows if g[6] >= 0),
        hidden=sum(1 for o in range(1, len(owners) + 1) if o % 50 == 7),
    )
    return {"counts": counts, "seconds": seconds, "sizes": sizes, "first_hour": first_hour}


# --- measuring ------------------------------------------------------------------------------------


class Probe:
    """Time and queries of each step of compute_all, patched in at module level."""

    def __init__(self):
        self.steps: dict[str, list] = {}

    def install(self, connection) -> None:
        import importlib

        for module_name, name in STEPS:
            module = importlib.import_module(f"rewards.public.{module_name}")
            original = getattr(module, name, None)
            if original is None:
                continue
            label = f"{module_name}.{name}"

            def timed(*args, _original=original, _label=label, **kwargs):
                log = connection.queries_log
                q0, t = len(log), time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    elapsed = time.perf_counter() - t
                    mine = [log[i] for i in range(q0, len(log))]
                    for q in mine:
                        q.setdefault("step", _label)
                    spent = self.steps.setdefault(_label, [0.0, 0])
                    spent[0] += elapsed
                    spent[1] += len(mine)

            setattr(module, name, timed)


def refresh_live_state(url: str) -> None:
    """What the ingestion worker keeps doing: nodes and GPUs that report were seen 0-19 s ago
    (loading took a while; the silent ones stay silent)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE contributors_node SET last_seen_at = now() - mod(id, 20) * interval '1 s'"
            " WHERE mod(id, 100) <> 37"
        )
        conn.execute(
            "UPDATE contributors_gpu g SET last_seen_at = now() - mod(g.id, 20) * interval '1 s',"
            " last_sample_at = now() - mod(g.id, 20) * interval '1 s'"
            " WHERE mod(g.node_id, 100) <> 37"
        )
        conn.execute("VACUUM (ANALYZE) contributors_node, contributors_gpu")


def clear_cache(cache_info: dict) -> int:
    """Delete every cache entry of this run; how many."""
    if cache_info["redis"] is not None:
        keys = list(cache_info["redis"].scan_iter(match=f"{cache_info['prefix']}:*", count=1000))
        if keys:
            cache_info["redis"].delete(*keys)
        return len(keys)
    from django.core.cache import cache

    cache.clear()  # a temporary folder of our own
    return -1


def time_compute_all(probe: Probe, cache_info: dict) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from rewards.public import store

    store.compute_all()  # warm-up: imports, connection, plans; then forget what it cached
    clear_cache(cache_info)
    runs = []
    for i in range(4):
        probe.steps = {}
        with CaptureQueriesContext(connection) as captured:
            t = time.perf_counter()
            stored = store.compute_all()
            seconds = time.perf_counter() - t
        runs.append(
            {
                "run": i + 1,
                "seconds": seconds,
                "queries": len(captured.captured_queries),
                "steps": dict(probe.steps),
                "sql": [
                    (float(q["time"]), q.get("step", "store"), q["sql"])
                    for q in captured.captured_queries
                ],
            }
        )
    boards = stored["leaderboard"]["periods"]
    net = stored["network"]
    return {
        "runs": runs,
        "online": net["online"],
        "epochs": len(net["epochs"]),
        "verification": net["verification"],
        "rows": {p: len(boards[p]["boards"]["total"]) for p in boards},
        "top": boards["30d"]["boards"]["total"][0] if boards["30d"]["boards"]["total"] else None,
    }


def fetch(client, path: str):
    """(seconds, status, bytes) of one GET, the whole body read (streams included)."""
    t = time.perf_counter()
    response = client.get(path)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return time.perf_counter() - t, response.status_code, body


def time_requests(client, path: str, n: int, warmups: int = 2) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmups):
        fetch(client, path)
    times, statuses = [], set()
    size = 0
    for _ in range(n):
        seconds, status, body = fetch(client, path)
        times.append(seconds)
        statuses.add(status)
        size = len(body)
    with CaptureQueriesContext(connection) as captured:
        _, status, body = fetch(client, path)
    times.sort()
    return {
        "path": path,
        "n": n,
        "median": statistics.median(times),
        "p95": times[min(len(times) - 1, int(0.95 * len(times)))],
        "min": times[0],
        "max": times[-1],
        "status": "/".join(str(s) for s in sorted(statuses)),
        "bytes": size,
        "queries": len(captured.captured_queries),
        "sql_s": sum(float(q["time"]) for q in captured.captured_queries),
        "sql": [(float(q["time"]), path, q["sql"]) for q in captured.captured_queries],
        "body": body,
    }


def run_size(args, gpus: int, probe: Probe, cache_info: dict) -> dict:
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from contributors.models import Contributor
    from rewards import manifests
    from rewards.models import Epoch

    connection.close()
    scratch.create(args.admin_url, DB)
    clear_cache(cache_info)
    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrate_s = time.perf_counter() - t
    now = datetime.now(UTC).replace(microsecond=0)
    history = f", {args.rollup_days} days of rollups" if args.rollup_days > args.days else ""
    print(
        f"\n=== {gpus:,} GPUs, {args.days} days{history}: loading (now = "
        f"{now:%Y-%m-%d %H:%M:%S} UTC) ==="
    )
    t = time.perf_counter()
    loaded = load(scratch.url_of(args.admin_url, DB), gpus, args.days, args.rollup_days, now)
    load_s = time.perf_counter() - t
    c = loaded["counts"]
    mib = {k: v / 2**20 for k, v in loaded["sizes"].items()}
    print(
        f"{c['contributors']:,} contributors ({c['hidden']} not listed), {c['nodes']:,} nodes, "
        f"{c['gpus']:,} GPUs (the largest contributor {c['big_gpus']}; {c['silent_gpus']} silent "
        f"for {SILENT_FOR.seconds // 3600} h, {c['held_gpus']} held out of every epoch); "
        f"{c['epochs']:,} epochs, {c['reward entries']:,} reward entries "
        f"({mib['rewards_rewardentry']:,.0f} MiB), {c['held-out rows']:,} held-out rows, "
        f"{c['earning days']:,} earning days, {c['gpu hours']:,} GPU-hours "
        f"({mib['contributors_gpuhour']:,.0f} MiB), {c['challenges']:,} challenges, "
        f"{c['token prices']:,} token prices.\nMigrated in {migrate_s:.1f} s, loaded in "
        f"{load_s:.1f} s."
    )
    result = {"gpus": gpus, "counts": c, "load_s": load_s}

    # 1. compute_all, the live state as fresh as the ingestion worker keeps it
    refresh_live_state(scratch.url_of(args.admin_url, DB))
    result["compute"] = computed = time_compute_all(probe, cache_info)
    print_compute(computed)

    # 2. serving
    anonymous = Client(HTTP_HOST="localhost")
    result["requests"] = requests = []
    for path in ("/api/v1/network", "/api/v1/leaderboard?period=30d&by=total", "/network/",
                 "/leaderboard/"):  # fmt: skip
        requests.append(time_requests(anonymous, path, args.requests))

    # 3. manifests
    epoch = Epoch.objects.order_by("-start").first()
    with CaptureQueriesContext(connection) as captured:
        t = time.perf_counter()
        manifest = manifests.publish(epoch.pk)
        publish_s = time.perf_counter() - t
    body = manifest.body.encode("ascii")
    result["manifest"] = {
        "epoch": epoch.pk,
        "gpus": epoch.gpu_count + epoch.held_out_count,
        "seconds": publish_s,
        "queries": len(captured.captured_queries),
        "bytes": len(body),
        "sha256": manifest.sha256,
        "sql": [(float(q["time"]), "publish", q["sql"]) for q in captured.captured_queries],
    }
    for suffix in ("json", "csv"):
        path = f"/api/v1/epochs/{epoch.pk}/manifest.{suffix}"
        requests.append(time_requests(anonymous, path, 5, warmups=1))
    served = requests[-2]["body"]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        handle.write(served)
        manifest_file = handle.name
    try:
        t = time.perf_counter()
        verified = subprocess.run(
            [sys.executable, str(ROOT / "rewards" / "verify_epoch.py"), manifest_file,
             "--sha256", manifest.sha256],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        verify_s = time.perf_counter() - t
    finally:
        os.unlink(manifest_file)
    result["verify"] = {
        "seconds": verify_s,
        "rc": verified.returncode,
        "output": (verified.stdout + verified.stderr).strip(),
        "same_bytes": served == body,
    }

    # 4. tax exports of the contributor with the most GPUs
    from django.db.models import Count

    heavy = Contributor.objects.annotate(n=Count("nodes__gpus")).order_by("-n", "pk").first()
    signed_in = Client(HTTP_HOST="localhost")
    signed_in.force_login(heavy)
    result["heavy"] = {"id": heavy.pk, "gpus": heavy.n}
    for path in ("/rewards/export.csv", "/rewards/export-universal.csv"):
        r = time_requests(signed_in, path, 3, warmups=1)
        r["lines"] = r["body"].count(b"\n")
        r["heavy"] = True
        requests.append(r)
    print_serving(result)
    if gpus == args.gpus:  # the main size: plans now, before --try-index changes them
        explain_compute(computed, args)
    if args.try_index:  # the proposed fix, tried on this database only
        with psycopg.connect(scratch.url_of(args.admin_url, DB), autocommit=True) as conn:
            t = time.perf_counter()
            conn.execute(f"CREATE INDEX {INDEX} ON contributors_gpuhour (start)")
            conn.execute("ANALYZE contributors_gpuhour")
            print(
                f"\n--try-index: CREATE INDEX {INDEX} ON contributors_gpuhour (start) in "
                f"{time.perf_counter() - t:.1f} s (this database only)"
            )
        refresh_live_state(scratch.url_of(args.admin_url, DB))
        result["compute_indexed"] = time_compute_all(probe, cache_info)
        print_compute(result["compute_indexed"])
        if gpus == args.gpus:
            explain_compute(result["compute_indexed"], args, " with the index")
    return result


# --- printing -----------------------------------------------------------------------------------


def print_compute(computed: dict) -> None:
    runs = computed["runs"]
    print("\ncompute_all():")
    print(f"  {'run':<44} {'seconds':>8} {'queries':>7} {'in SQL':>8}")
    for r in runs:
        label = "1 (uptime day sums not cached)" if r["run"] == 1 else f"{r['run']} (cached)"
        sql_s = sum(q[0] for q in r["sql"])
        print(f"  {label:<44} {r['seconds']:>8.3f} {r['queries']:>7} {sql_s:>8.3f}")
    print(f"  {'step':<44} {'run 1':>16} {'run 2':>16}")
    for module_name, name in STEPS:
        label = f"{module_name}.{name}"
        cells = []
        for r in runs[:2]:
            s, q = r["steps"].get(label, (0.0, 0))
            cells.append(f"{s:>8.3f} s {q:>3} q")
        nested = "    " if module_name == "uptime" else "  "
        print(f"{nested}{label:<{46 - len(nested)}}" + "".join(f"{c:>17}" for c in cells))
    online = computed["online"]
    print(
        f"  figures: {online['gpus']:,} GPUs on {online['machines']:,} machines online, "
        f"{computed['epochs']} recent epochs, verification {computed['verification']['passed']:,}"
        f" passed / {computed['verification']['failed']:,} failed in 24 h; board rows "
        + ", ".join(f"{p} {n}" for p, n in computed["rows"].items())
    )
    for r in runs[:2]:
        top = sorted(r["sql"], key=lambda q: -q[0])[:4]
        print(f"  slowest statements of run {r['run']} (Django's timing):")
        for seconds, step, sql in top:
            print(f"    {seconds:7.3f} s  {step:<24} {' '.join(sql.split())[:100]}")


def print_serving(result: dict) -> None:
    m, v = result["manifest"], result["verify"]
    print(
        f"\nmanifests.publish(epoch {m['epoch']}, {m['gpus']:,} GPUs): {m['seconds']:.3f} s, "
        f"{m['queries']} queries, {m['bytes']:,} bytes (sha256 {m['sha256'][:16]}…)"
    )
    print(
        f"verify_epoch.py on the served manifest.json: {v['seconds']:.3f} s, exit {v['rc']}, "
        f"served bytes identical to the stored ones: {v['same_bytes']}\n  {v['output'][:300]}"
    )
    h = result["heavy"]
    print(f"\nrequests (the exports as contributor {h['id']}, {h['gpus']} GPUs):")
    print(
        f"  {'GET':<46} {'n':>3} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'status':>6} "
        f"{'queries':>7} {'SQL ms':>7} {'bytes':>11}"
    )
    for r in result["requests"]:
        print(
            f"  {r['path']:<46} {r['n']:>3} {1000 * r['median']:>10.1f} {1000 * r['p95']:>8.1f} "
            f"{1000 * r['max']:>8.1f} {r['status']:>6} {r['queries']:>7} {1000 * r['sql_s']:>7.1f} "
            f"{r['bytes']:>11,}" + (f"  ({r['lines']:,} lines)" if "lines" in r else "")
        )


def summary(sizes: list[dict]) -> None:
    print("\n=== Summary ===")
    head = "".join(f"{s['gpus']:>14,} GPUs {'':>1}" for s in sizes)
    print(f"{'':<58}{head}")
    rows = []

    def compute_row(label, pick, key="compute"):
        cells = []
        for s in sizes:
            if key not in s:
                cells.append("-")
                continue
            r = pick(s[key]["runs"])
            cells.append(f"{r['seconds']:>9.3f} s {r['queries']:>3} q")
        rows.append((label, cells))

    median = lambda runs: sorted(runs[1:], key=lambda r: r["seconds"])[1]  # noqa: E731
    compute_row("compute_all, run 1 (uptime day sums not cached)", lambda runs: runs[0])
    compute_row("compute_all, run 2 (cached)", lambda runs: runs[1])
    compute_row("compute_all, median of runs 2-4", median)
    if any("compute_indexed" in s for s in sizes):
        compute_row("  + index on GpuHour(start): run 1", lambda runs: runs[0], "compute_indexed")
        compute_row("  + index on GpuHour(start): median of 2-4", median, "compute_indexed")
    for index, r in enumerate(sizes[0]["requests"]):
        label = f"GET {r['path'].split('?')[0] if 'epochs' not in r['path'] else r['path']}"
        if "?" in r["path"]:
            label += "?" + r["path"].split("?")[1]
        label = label.replace(f"/epochs/{sizes[0]['manifest']['epoch']}/", "/epochs/<id>/")
        label += f" (median of {r['n']})"
        cells = []
        for s in sizes:
            q = s["requests"][index]
            cells.append(f"{1000 * q['median']:>8.1f} ms {q['queries']:>3} q")
        rows.append((label, cells))
    rows.append(
        (
            "manifests.publish(newest epoch)",
            [f"{s['manifest']['seconds']:>9.3f} s {s['manifest']['queries']:>3} q" for s in sizes],
        )
    )
    rows.append(("  manifest bytes", [f"{s['manifest']['bytes']:>17,}" for s in sizes]))
    rows.append(
        (
            "verify_epoch.py (subprocess)",
            [f"{s['verify']['seconds']:>9.3f} s rc {s['verify']['rc']}" for s in sizes],
        )
    )
    for r in sizes[0]["requests"]:
        if "lines" in r:
            index = sizes[0]["requests"].index(r)
            rows.append(
                (
                    f"  {r['path']}: bytes, lines",
                    [f"{s['requests'][index]['bytes']:>9,} {s['requests'][index]['lines']:>7,}"
                     for s in sizes],
                )
            )  # fmt: skip
    for label, cells in rows:
        print(f"{label:<58}" + "".join(f"{c:>20}" for c in cells))


def explain_compute(computed: dict, args, label: str = "") -> None:
    """Plans of the slowest statements of compute_all runs 1 and 2 (with --explain, or where a
    run took over --slow-s), on the database as it is now."""
    plans = []
    for r in computed["runs"][:2]:
        if args.explain or r["seconds"] > args.slow_s:
            top = sorted(r["sql"], key=lambda q: -q[0])[:3]
            plans.extend((f"compute_all run {r['run']}{label}", *q) for q in top)
    show_plans(plans, args)


def explain(sizes: list[dict], args) -> None:
    """Plans of the slowest statements of the biggest size's requests (with --explain, or where
    the median took over --slow-ms) and, with --explain, of publishing the manifest."""
    big = sizes[-1]
    plans = []
    for r in big["requests"]:
        if args.explain or r["median"] * 1000 > args.slow_ms:
            top = sorted(r["sql"], key=lambda q: -q[0])[:2]
            plans.extend((f"GET {r['path']} ({1000 * r['median']:.0f} ms)", *q) for q in top)
    if args.explain:
        top = sorted(big["manifest"]["sql"], key=lambda q: -q[0])[:1]
        plans.extend(("manifests.publish", *q) for q in top)
    show_plans(plans, args)


def show_plans(plans: list[tuple], args) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of each (where, seconds, step, sql), each statement once."""
    seen = set()
    with psycopg.connect(scratch.url_of(args.admin_url, DB)) as conn:
        for where, seconds, step, sql in plans:
            key = re.sub(r"'[^']*'", "?", " ".join(sql.split()))  # the same statement, other times
            if key in seen or not sql.lstrip().upper().startswith("SELECT") or seconds < 0.005:
                continue
            seen.add(key)
            print(
                f"\n--- EXPLAIN (ANALYZE, BUFFERS) of a statement of {where}, step {step}, "
                f"{seconds:.3f} s when measured:"
            )
            print("   ", " ".join(sql.split())[:700])
            for (line,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql):
                print("   ", line if len(line) < 220 else line[:220] + " …")
            conn.rollback()


def setup_cache(url: str, prefix: str) -> dict:
    """Redis at `url` under `prefix`, or a temporary file cache when it does not answer."""
    if url.startswith("redis"):
        try:
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
            client.ping()
            os.environ["CACHE_URL"] = url
            return {"redis": client, "prefix": prefix, "url": url, "dir": None}
        except Exception as exc:  # noqa: BLE001 - any failure: fall back
            print(f"(Redis at {url} does not answer: {exc}; using a temporary file cache)")
    folder = tempfile.mkdtemp(prefix="bench-public-cache-")
    os.environ["CACHE_URL"] = f"filecache://{folder}"
    return {"redis": None, "prefix": prefix, "url": f"filecache://{folder}", "dir": folder}


def main() -> None:
    global DB
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", type=int, default=10_000, help="the main size (10,000)")
    parser.add_argument("--days", type=int, default=7, help="days of hourly epochs (7)")
    parser.add_argument(
        "--compare", type=int, default=1_000, help="a smaller size run first (0: none)"
    )
    parser.add_argument(
        "--rollup-days", type=int, default=None, help="days of hourly rollups (--days)"
    )
    parser.add_argument(
        "--try-index",
        action="store_true",
        help="then time compute_all again with an index on GpuHour(start) (bench database only)",
    )
    parser.add_argument("--requests", type=int, default=50, help="requests per endpoint")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--cache-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--db", default=DB, help=f"the database to (re)create ({DB})")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest")
    parser.add_argument("--slow-s", type=float, default=10.0, help="compute_all seconds: explain")
    parser.add_argument("--slow-ms", type=float, default=200.0, help="request ms: explain")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    DB = args.db
    if DB == "test" or not DB.replace("_", "").isalnum():
        parser.error("pick another database name (`test` is CI's)")
    if args.days < 1 or args.gpus < 1:
        parser.error("--gpus and --days must be at least 1")
    args.rollup_days = max(args.days, args.rollup_days or args.days)

    broker_dir = Path(tempfile.mkdtemp(prefix="bench-public-broker-"))
    prefix = f"bench_public_{os.getpid()}"
    cache_info = setup_cache(args.cache_url, prefix)
    os.environ["DATABASE_URL"] = scratch.url_of(args.admin_url, DB)
    os.environ.setdefault("DEBUG", "true")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["CELERY_BROKER_URL"] = "filesystem://"
    os.environ["CELERY_BROKER_DIR"] = str(broker_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    sys.path.insert(0, str(ROOT))
    import django

    scratch.create(args.admin_url, DB)  # settings may open it at setup
    from django.conf import settings

    settings.CACHES  # noqa: B018 - read the settings module before changing its cache
    settings.CACHES["default"]["KEY_PREFIX"] = prefix
    django.setup()
    from django.core.cache import cache

    assert cache.key_prefix == prefix, "the cache prefix did not take"

    print(__doc__.split("\n")[0])
    print(f"PostgreSQL: {pg_version(args.admin_url)}")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at start; Python "
        f"{platform.python_version()}, Django {django.get_version()}, DEBUG={settings.DEBUG}; "
        f"cache {cache_info['url']} (prefix {prefix}), Celery broker filesystem in {broker_dir}"
    )
    from django.db import connection

    probe = Probe()
    probe.install(connection)
    sizes = []
    try:
        for gpus in sorted({g for g in (args.compare, args.gpus) if g > 0}):
            sizes.append(run_size(args, gpus, probe, cache_info))
            print(f"load average after {gpus:,} GPUs: {os.getloadavg()[0]:.2f}")
        summary(sizes)
        explain(sizes, args)
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        connection.close()
        if not args.keep:
            scratch.drop(args.admin_url, DB)
        clear_cache(cache_info)
        shutil.rmtree(broker_dir, ignore_errors=True)
        if cache_info["dir"]:
            shutil.rmtree(cache_info["dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
