"""The dataset of issue 15, written straight into a migrated PostgreSQL database with COPY.

One heavy contributor (nodes of 8 GPUs: H100s and A100s as NVML names them) with hourly
rollups over the whole history, minute rollups over their retention window and 10-second raw
samples over the raw window; attested jobs; one settled hourly epoch per hour with the ledger
entries settlement writes (same `inputs` shape, pools split to the wei); held-out rows; a payout
wallet and a few claims with their Claimed events. Other contributors' GPUs fill the rest of the
ledger (one entry per GPU and epoch) and report raw samples for the last hour, so the heavy
contributor's rows are the small share of each big table that they are in production.

Rows are generated in Python from precomputed text pieces (no per-row `datetime` or `random`),
loaded with `COPY ... FROM STDIN` with foreign-key triggers off (every row is consistent by
construction) and the big tables' secondary indexes built after their rows, then `VACUUM
ANALYZE`, so the planner sees the statistics and visibility map a long-running database has.
"""

import hashlib
import random
import time
from array import array
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

GPUS_PER_NODE = 8
NULL = "\\N"  # COPY text format
EPOCH = timedelta(hours=1)
GRACE = timedelta(minutes=15)
COMPUTE_POOL_WEI = 1_000 * 10**18
IDLE_POOL_WEI = 250 * 10**18
# A public development key (anvil's account 2): the heavy contributor signs in with it.
HEAVY_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdb365a"
DISTRIBUTOR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
# (name, memory MiB, catalog weight as ten-thousandths, board power W)
HEAVY_MODELS = [("NVIDIA H100 80GB HBM3", 81559, 30000, 700)] * 6 + [
    ("NVIDIA A100-SXM4-80GB", 81920, 10000, 400)
] * 2
OTHER_MODELS = [
    ("NVIDIA GeForce RTX 4090", 24564, 5300, 450),
    ("NVIDIA L4", 23034, 3900, 72),
    ("NVIDIA A100-SXM4-80GB", 81920, 10000, 400),
    ("NVIDIA H100 80GB HBM3", 81559, 30000, 700),
    ("NVIDIA RTX 6000 Ada Generation", 49140, 11600, 300),
]
# The schema these rows are written for. run.py migrates to it, loads, then runs the newer
# migrations, so that tables added later (day totals, say) are backfilled by their own
# migrations from the loaded rows, as an upgrade in production does.
SCHEMA = [
    ("contributors", "0007_node_flags_unrated_gpus"),
    ("rewards", "0006_catalog_memory_power_values"),
]
# Tables whose secondary indexes are built after their rows (a sort instead of random inserts).
BIG_TABLES = ("contributors_sample", "contributors_gpuminute", "rewards_rewardentry")


@dataclass
class Sizes:
    gpus: int = 64
    days: int = 90  # hourly rollups, epochs and jobs
    minute_days: int = 90  # minute rollups (the portal keeps RETENTION_MINUTE_DAYS = 90)
    raw_days: int = 7  # 10-second samples (RETENTION_RAW_DAYS = 7)
    others: int = 2000  # other contributors' GPUs, one ledger entry per epoch each
    others_raw_minutes: int = 60
    seed: int = 15


@dataclass
class Loaded:
    heavy_id: int
    heavy_address: str
    gpu_uuids: list[str]
    busiest_uuid: str  # the GPU the per-GPU pages are measured on
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


def _uuid(rnd: random.Random) -> str:
    h = f"{rnd.getrandbits(128):032x}"
    return f"GPU-{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[rnd.randrange(4)]}{h[17:20]}-{h[20:32]}"


def _dec(scaled: int, places: int) -> str:
    """An exact decimal string of scaled / 10**places, no trailing zeros (as decimal_string)."""
    whole, rest = divmod(scaled, 10**places)
    if not rest:
        return str(whole)
    return f"{whole}.{rest:0{places}d}".rstrip("0")


def _split(pool: int, units: list[int]) -> list[int]:
    """floor(pool * u / Σu), then the leftover one wei each by largest remainder (settlement's
    rule; ties here by position, which is close enough for a benchmark)."""
    total = sum(units)
    if not total:
        return [0] * len(units)
    amounts, remainders = [], []
    for u in units:
        q, r = divmod(pool * u, total)
        amounts.append(q)
        remainders.append(r)
    leftover = pool - sum(amounts)
    for index in sorted(range(len(units)), key=lambda i: -remainders[i])[:leftover]:
        amounts[index] += 1
    return amounts


@contextmanager
def deferred_indexes(cur, tables):
    """Drop the tables' unique constraints and secondary indexes; rebuild them on exit."""
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
    yield
    for statement in rebuild:
        cur.execute(statement)


class Writer:
    """COPY into one table in large writes."""

    def __init__(self, cur, table: str, columns: str):
        self.manager = cur.copy(f"COPY {table} ({columns}) FROM STDIN")
        self.copy = self.manager.__enter__()
        self.parts: list[str] = []
        self.size = 0
        self.rows = 0

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


def _timeline(rnd: random.Random, minutes: int, offline: list[tuple[int, int]]):
    """Per minute of the history: the index of the job running (-1: idle), and jobs
    [(first minute, end minute or None while running, kind)]."""
    job_at = array("i", [-1]) * minutes
    jobs = []
    t = rnd.randrange(0, 6 * 60)
    while t < minutes:
        length = rnd.randrange(2 * 60, 20 * 60)
        end = t + length
        job_at[t : min(end, minutes)] = array("i", [len(jobs)]) * (min(end, minutes) - t)
        kind = "training" if rnd.random() < 0.7 else "inference"
        jobs.append((t, end if end < minutes else None, kind))
        t = end + rnd.randrange(30, 6 * 60)
    for first, last in offline:
        job_at[first:last] = array("i", [-2]) * (last - first)
    return job_at, jobs


def _tails(rnd: random.Random, memory: int, power: int, per_minute: bool):
    """Precomputed column texts after (gpu, time) for busy and idle readings."""
    busy, idle = [], []
    for _ in range(509):
        for out, util, mem, temp, watts in (
            (busy, rnd.uniform(55, 100), rnd.uniform(0.45, 0.95), rnd.uniform(55, 82), 0.5),
            (idle, rnd.uniform(0, 3), rnd.uniform(0.005, 0.03), rnd.uniform(28, 40), 0.1),
        ):
            mem_mib = int(memory * mem)
            watt = power * watts * rnd.uniform(0.8, 1.2)
            if per_minute:
                # samples, online_s, n_util, sum_util, max_util, sum_mem, max_mem, n_temp,
                # sum_temp, max_temp, n_power, sum_power, max_power
                out.append(
                    f"6\t60\t6\t{util * 6:.2f}\t{min(100, util + 4):.0f}\t{mem_mib * 6}\t"
                    f"{mem_mib + 300}\t6\t{temp * 6:.1f}\t{temp + 2:.0f}\t6\t{watt * 6:.1f}\t"
                    f"{watt * 1.1:.1f}"
                )
            else:
                out.append(f"{util:.0f}\t{mem_mib}\t{memory}\t{temp:.0f}\t{watt:.1f}")
    return busy, idle


def load(url: str, sizes: Sizes, now: datetime | None = None, log=print) -> Loaded:
    from eth_account import Account

    rnd = random.Random(sizes.seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    this_minute = now.replace(second=0)
    this_hour = this_minute.replace(minute=0)
    g0 = this_hour - timedelta(days=sizes.days)  # first minute of the history
    minutes = int((this_minute - g0).total_seconds() // 60) + 1  # up to the current minute
    minute_prefix = [(g0 + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M") for i in range(minutes)]
    last_end = (now - GRACE).replace(minute=0, second=0)
    epochs = sizes.days * 24
    epoch_starts = [last_end - (epochs - k) * EPOCH for k in range(epochs)]
    heavy_address = Account.from_key(HEAVY_KEY).address
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}

    def timed(name):
        timings[name] = time.perf_counter()

    def done(name, rows):
        timings[name] = round(time.perf_counter() - timings[name], 1)
        counts[name] = rows
        log(f"  {name:<22} {rows:>11,} rows  {timings[name]:6.1f} s")

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no FK triggers while loading
        cur.execute("SET maintenance_work_mem = '512MB'")
        nodes_heavy = max(1, -(-sizes.gpus // GPUS_PER_NODE))
        nodes_other = -(-sizes.others // GPUS_PER_NODE)
        timed("people and machines")
        # Contributors: 1 = the heavy one, 2.. = one per other node.
        w = Writer(
            cur,
            "contributors_contributor",
            "id, password, is_superuser, username,"
            " first_name, last_name, email, is_staff, is_active, date_joined",
        )
        joined = _ts(g0 - timedelta(days=3))
        w.add(f"1\t!\tf\t{heavy_address}\t\t\t\tf\tt\t{joined}\n")
        for k in range(nodes_other):
            w.add(f"{k + 2}\t!\tf\t0x{rnd.getrandbits(160):040x}\t\t\t\tf\tt\t{joined}\n")
        w.close()
        w = Writer(cur, "contributors_wallet", "contributor_id, address, linked_at, is_payout")
        w.add(f"1\t{heavy_address}\t{joined}\tt\n")
        w.close()
        # Nodes: 1..nodes_heavy are the heavy contributor's.
        w = Writer(
            cur,
            "contributors_node",
            "id, owner_id, name, hostname, agent_version,"
            " token_prefix, token_hash, created_at, last_seen_at",
        )
        seen = _ts(now)
        for k in range(nodes_heavy + nodes_other):
            owner = 1 if k < nodes_heavy else k - nodes_heavy + 2
            name = f"gpu-node-{k + 1:02d}" if k < nodes_heavy else f"rig-{k}"
            digest = hashlib.sha256(f"bench-node-{k}".encode()).hexdigest()
            w.add(
                f"{k + 1}\t{owner}\t{name}\t{name}.lan\t0.4.0\tp{k:08d}\t{digest}\t{joined}"
                f"\t{seen}\n"
            )
        w.close()
        # GPUs: 1..gpus are the heavy contributor's; the last one is disabled by its owner.
        w = Writer(
            cur,
            "contributors_gpu",
            "id, node_id, uuid, name, memory_total_mib,"
            " driver_version, pci_bus_id, first_seen_at, last_seen_at, enabled, unrated,"
            " last_job_id, last_sample_at, last_utilization_gpu_pct, last_memory_used_mib,"
            " last_memory_total_mib, last_temperature_c, last_power_w",
        )
        gpus = []  # (id, node index, uuid, model)
        for k in range(sizes.gpus + sizes.others):
            heavy = k < sizes.gpus
            node = k // GPUS_PER_NODE if heavy else nodes_heavy + (k - sizes.gpus) // 8
            model = (
                HEAVY_MODELS[node % len(HEAVY_MODELS)]
                if heavy
                else OTHER_MODELS[node % len(OTHER_MODELS)]
            )
            uuid = _uuid(rnd)
            gpus.append((k + 1, node, uuid, model))
            enabled = "f" if heavy and k == sizes.gpus - 1 else "t"
            bus = f"00000000:{0x18 + 0x10 * (k % 8):02X}:00.0"
            w.add(
                f"{k + 1}\t{node + 1}\t{uuid}\t{model[0]}\t{model[1]}\t550.90.07\t{bus}\t"
                f"{joined}\t{seen}\t{enabled}\tf\t\t{seen}\t42\t{model[1] // 2}\t{model[1]}\t"
                f"61\t{model[3] // 2}\n"
            )
        w.close()
        heavy_gpus = gpus[: sizes.gpus]
        done("people and machines", 1 + nodes_other + nodes_heavy + nodes_other + len(gpus))

        # Each heavy node has been offline twice: a few hours ~12 days ago, two hours ~2 days ago.
        offline = {}
        for node in range(nodes_heavy):
            spans = []
            for days_ago, hours in ((12 + node, 6), (2, 2)):
                first = minutes - days_ago * 1440 + node * 97
                if first >= 0 and first + hours * 60 < minutes and node % 3 == 0:
                    spans.append((first, first + hours * 60))
            offline[node] = spans

        timed("jobs")
        timelines = {}
        w = Writer(
            cur, "rewards_job", "job_id, gpu_id, kind, started_at, ended_at, created_at, updated_at"
        )
        for gpu_id, node, _u, _m in heavy_gpus:
            job_at, jobs = _timeline(rnd, minutes, offline[node])
            timelines[gpu_id] = (job_at, jobs)
            for first, end, kind in jobs:
                start = g0 + timedelta(minutes=first, seconds=rnd.randrange(60))
                ended = NULL if end is None else _ts(g0 + timedelta(minutes=end))
                job_id = f"{kind[:5]}-{gpu_id}-{first}"
                w.add(
                    f"{job_id}\t{gpu_id}\t{kind}\t{_ts(start)}\t{ended}\t{_ts(start)}\t"
                    f"{_ts(start)}\n"
                )
        done("jobs", w.close())

        with deferred_indexes(cur, BIG_TABLES):
            timed("hourly rollups")
            w = Writer(
                cur,
                "contributors_gpuhour",
                "gpu_id, start, samples, online_s, n_util,"
                " sum_util, max_util, sum_mem, max_mem, n_temp, sum_temp, max_temp,"
                " n_power, sum_power, max_power",
            )
            for gpu_id, _n, _u, model in heavy_gpus:
                job_at = timelines[gpu_id][0]
                for h in range(0, minutes, 60):
                    span = job_at[h : h + 60]
                    off = span.count(-2)
                    if off == len(span):
                        continue
                    busy = len(span) - off - span.count(-1)
                    on = len(span) - off
                    util = (busy * rnd.uniform(70, 95) + (on - busy) * 1.5) / on
                    mem = int(model[1] * (0.02 + 0.7 * busy / on))
                    n = on * 6
                    w.add(
                        f"{gpu_id}\t{minute_prefix[h]}:00+00\t{n}\t{on * 60}\t{n}\t"
                        f"{util * n:.2f}\t{min(100, util + 12):.0f}\t{mem * n}\t"
                        f"{min(model[1], mem + 4000)}\t{n}\t{(35 + util / 3) * n:.1f}\t82\t{n}\t"
                        f"{model[3] * (0.1 + util / 200) * n:.1f}\t{model[3] * 0.9:.1f}\n"
                    )
            done("hourly rollups", w.close())

            timed("minute rollups")
            w = Writer(
                cur,
                "contributors_gpuminute",
                "gpu_id, start, samples, online_s, n_util,"
                " sum_util, max_util, sum_mem, max_mem, n_temp, sum_temp, max_temp,"
                " n_power, sum_power, max_power",
            )
            first_minute = max(0, minutes - sizes.minute_days * 1440)
            for gpu_id, _n, _u, model in heavy_gpus:
                busy_tails, idle_tails = _tails(rnd, model[1], model[3], per_minute=True)
                job_at = timelines[gpu_id][0]
                rows = [
                    f"{gpu_id}\t{minute_prefix[i]}:00+00\t"
                    f"{busy_tails[i % 509] if job_at[i] >= 0 else idle_tails[i % 509]}\n"
                    for i in range(first_minute, minutes)
                    if job_at[i] != -2
                ]
                w.add("".join(rows), len(rows))
            done("minute rollups", w.close())

            timed("raw samples")
            w = Writer(
                cur,
                "contributors_sample",
                "gpu_id, ts, utilization_gpu_pct,"
                " memory_used_mib, memory_total_mib, temperature_c, power_w, job_id",
            )
            first_raw = max(0, minutes - sizes.raw_days * 1440)
            last_second = now.second
            for gpu_id, _n, _u, model in heavy_gpus:
                busy_tails, idle_tails = _tails(rnd, model[1], model[3], per_minute=False)
                job_at, jobs = timelines[gpu_id]
                names = [f"{kind[:5]}-{gpu_id}-{first}" for first, _end, kind in jobs]
                offset = gpu_id % 10
                rows = []
                for i in range(first_raw, minutes):
                    job = job_at[i]
                    if job == -2:
                        continue
                    prefix = minute_prefix[i]
                    tails = busy_tails if job >= 0 else idle_tails
                    name = names[job] if job >= 0 else ""
                    for s in range(offset, 60, 10):
                        if i == minutes - 1 and s > last_second:
                            break
                        rows.append(
                            f"{gpu_id}\t{prefix}:{s:02d}+00\t{tails[(i + s) % 509]}\t{name}\n"
                        )
                w.add("".join(rows), len(rows))
            # Everybody else's GPUs, for the last hour: the heavy contributor's samples are a
            # share of the table, as in production.
            for gpu_id, _n, _u, model in gpus[sizes.gpus :]:
                busy_tails, idle_tails = _tails(random.Random(gpu_id), model[1], model[3], False)
                rows = []
                for i in range(max(0, minutes - sizes.others_raw_minutes), minutes):
                    for s in range(gpu_id % 10, 60, 10):
                        if i == minutes - 1 and s > last_second:
                            break
                        tails = busy_tails if (i // 90 + gpu_id) % 3 else idle_tails
                        rows.append(
                            f"{gpu_id}\t{minute_prefix[i]}:{s:02d}+00\t{tails[(i + s) % 509]}\t\n"
                        )
                w.add("".join(rows), len(rows))
            done("raw samples", w.close())

            timed("epochs and ledger")
            held_rows, epoch_rows, earned_by_epoch = _ledger(
                cur, sizes, heavy_gpus, gpus[sizes.gpus :], epoch_starts, g0, timelines, offline
            )
            entries = counts["ledger entries"] = held_rows.pop("entries")
            w = Writer(
                cur,
                "rewards_epoch",
                'id, start, "end", status, grace_s, max_gap_s,'
                " compute_pool_wei, idle_pool_wei, compute_units, idle_units,"
                " compute_paid_wei, idle_paid_wei, compute_unallocated_wei,"
                " idle_unallocated_wei, gpu_count, held_out_count, method, settled_at",
            )
            for row in epoch_rows:
                w.add(row)
            w.close()
            w = Writer(
                cur,
                "rewards_heldout",
                "epoch_id, gpu_id, contributor_id, reason, detail, covered_seconds",
            )
            for row in held_rows["rows"]:
                w.add(row)
            counts["held-out rows"] = w.close()
            done("epochs and ledger", entries)
            counts["heavy ledger entries"] = held_rows["heavy_entries"]
            counts["epochs"] = len(epoch_rows)
            timed("secondary indexes")
        done("secondary indexes", 0)

        _claims(cur, heavy_address, earned_by_epoch, epoch_starts, rnd)
        for table in (
            "contributors_contributor",
            "contributors_node",
            "contributors_gpu",
            "rewards_epoch",
        ):
            sql = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"  # noqa: S608 - our own names
            cur.execute(sql)
        conn.commit()
    timed("vacuum analyze")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    done("vacuum analyze", 0)
    busiest = heavy_gpus[0][2]
    return Loaded(
        heavy_id=1,
        heavy_address=heavy_address,
        gpu_uuids=[g[2] for g in heavy_gpus],
        busiest_uuid=busiest,
        counts=counts,
        seconds=timings,
    )


def _ledger(cur, sizes, heavy_gpus, other_gpus, epoch_starts, g0, timelines, offline):
    """Entries as `rewards.settlement.settle` writes them; returns held-out rows, epoch rows
    and the heavy contributor's earnings per epoch."""
    entry = Writer(
        cur,
        "rewards_rewardentry",
        "epoch_id, gpu_id, contributor_id, kind, units, amount_wei, inputs, created_at",
    )
    held, epochs, earned = [], [], []
    heavy_entries = 0
    owner_of_other = {gpu_id: node - len(offline) + 2 for gpu_id, node, _u, _m in other_gpus}
    n_heavy = len(heavy_gpus)
    flagged_gpu = heavy_gpus[min(9, n_heavy - 1)][0]
    flag_from = len(epoch_starts) - 20 * 24
    for k, start in enumerate(epoch_starts):
        end = start + EPOCH
        start_s, end_s, settled = _ts(start), _ts(end), _ts(end + GRACE)
        minute0 = int((start - g0).total_seconds() // 60)
        compute, idle = [], []  # (gpu_id, owner, units scaled, inputs pieces)
        held_here = 0
        for index, (gpu_id, _n, _u, model) in enumerate(heavy_gpus):
            job_at = timelines[gpu_id][0]
            span = job_at[max(0, minute0) : minute0 + 60] if minute0 + 60 > 0 else array("i")
            if span and span.count(-2) == len(span):
                continue  # offline all epoch: nothing covered, no row (the statement says so)
            if index == n_heavy - 1 and k >= len(epoch_starts) - 24:
                held.append(
                    f"{k + 1}\t{gpu_id}\t1\tdisabled\tThis GPU was disabled by its owner.\t3600\n"
                )
                held_here += 1
                continue
            if gpu_id == flagged_gpu and flag_from <= k < flag_from + 48:
                held.append(
                    f"{k + 1}\t{gpu_id}\t1\tflagged\tOpen flag: implausible telemetry.\t3600\n"
                )
                held_here += 1
                continue
            busy = 300 + (gpu_id * 7919 + k * 104729) % 3000
            util10 = 550 + (gpu_id * 31 + k * 17) % 450
            compute.append((gpu_id, 1, busy, util10, model))
            idle.append((gpu_id, 1, 3600 - busy, model))
        for gpu_id, _node, _uuid, model in other_gpus:
            busy = 600 + (gpu_id * 7919 + k * 104729) % 2900
            if (gpu_id + k) % 3 == 0:
                compute.append((gpu_id, owner_of_other[gpu_id], busy, 400 + gpu_id % 600, model))
            else:
                idle.append((gpu_id, owner_of_other[gpu_id], 3600 - busy, model))
        # Compute units = s * util% / 100 * weight: exact with 7 decimals (util 1, weight 4).
        c_units = [s * u10 * m[2] for _g, _o, s, u10, m in compute]
        # Idle units = s * committed MiB / 1024 GiB·s: exact with 10 decimals.
        i_units = [s * m[1] * 9765625 for _g, _o, s, m in idle]
        c_total, i_total = sum(c_units), sum(i_units)
        c_amounts = _split(COMPUTE_POOL_WEI, c_units)
        i_amounts = _split(IDLE_POOL_WEI, i_units)
        c_total_s, i_total_s = _dec(c_total, 7), _dec(i_total, 10)
        heavy_earned = 0
        for (gpu_id, owner, s, u10, model), units, amount in zip(
            compute, c_units, c_amounts, strict=True
        ):
            units_s = _dec(units, 7)
            share = _dec((units * 10**19 // c_total + 5) // 10, 18) if c_total else "0"
            entry.add(
                f"{k + 1}\t{gpu_id}\t{owner}\tcompute\t{units_s}\t{amount}\t"
                f'{{"seconds": "{s}", "avg_utilization_pct": "{_dec(u10, 1)}", '
                f'"null_utilization_seconds": "0", "weight": "{_dec(model[2], 4)}", '
                f'"gib_seconds": null, "pool_wei": "{COMPUTE_POOL_WEI}", '
                f'"total_units": "{c_total_s}", "share": "{share}", "units": "{units_s}"}}\t'
                f"{settled}\n"
            )
            if owner == 1:
                heavy_entries += 1
                heavy_earned += amount
        for (gpu_id, owner, s, model), units, amount in zip(idle, i_units, i_amounts, strict=True):
            units_s = _dec(units, 10)
            share = _dec((units * 10**19 // i_total + 5) // 10, 18) if i_total else "0"
            entry.add(
                f"{k + 1}\t{gpu_id}\t{owner}\tidle\t{units_s}\t{amount}\t"
                f'{{"seconds": "{s}", "avg_utilization_pct": null, "weight": null, '
                f'"gib_seconds": "{units_s}", "committed_mib": {model[1]}, '
                f'"pool_wei": "{IDLE_POOL_WEI}", "total_units": "{i_total_s}", '
                f'"share": "{share}", "units": "{units_s}"}}\t{settled}\n'
            )
            if owner == 1:
                heavy_entries += 1
                heavy_earned += amount
        earned.append(heavy_earned)
        paid_gpus = len({g for g, *_ in compute} | {g for g, *_ in idle})
        c_paid, i_paid = sum(c_amounts), sum(i_amounts)
        epochs.append(
            f"{k + 1}\t{start_s}\t{end_s}\tsettled\t900\t30\t{COMPUTE_POOL_WEI}\t{IDLE_POOL_WEI}\t"
            f"{c_total_s}\t{i_total_s}\t{c_paid}\t{i_paid}\t{COMPUTE_POOL_WEI - c_paid}\t"
            f"{IDLE_POOL_WEI - i_paid}\t{paid_gpus}\t{held_here}\tsql\t{settled}\n"
        )
    rows = {"rows": held, "entries": entry.close(), "heavy_entries": heavy_entries}
    return rows, epochs, earned


def _claims(cur, address, earned_by_epoch, epoch_starts, rnd) -> None:
    """Claims every ~20 days, confirmed on chain; one expired, the newest still submitted."""
    plan = [
        (80, "confirmed"),
        (60, "confirmed"),
        (40, "confirmed"),
        (20, "confirmed"),
        (10, "expired"),
        (1, "submitted"),
    ]
    cumulative_confirmed, cumulative, block = 0, 0, 1000
    claim = Writer(
        cur,
        "rewards_claim",
        "contributor_id, chain_id, distributor, account,"
        " cumulative_wei, amount_wei, deadline, signature, status, tx_hash,"
        " confirmed_block, created_at, submitted_at, confirmed_at, expired_at",
    )
    events = []
    for days_ago, status in plan:
        upto = len(epoch_starts) - days_ago * 24
        if upto <= 0:
            continue
        when = epoch_starts[upto - 1] + EPOCH + GRACE
        total = sum(earned_by_epoch[:upto])
        amount = total - cumulative_confirmed
        if amount <= 0:
            continue
        cumulative = total
        tx = f"0x{rnd.getrandbits(256):064x}"
        sig = f"0x{rnd.getrandbits(520):0130x}"
        deadline = int((when + timedelta(hours=1)).timestamp())
        block += 40_000
        confirmed = _ts(when + timedelta(minutes=5)) if status == "confirmed" else NULL
        expired = _ts(when + timedelta(hours=2)) if status == "expired" else NULL
        tx_field = tx if status in ("confirmed", "submitted") else ""
        claim.add(
            f"1\t{CHAIN_ID}\t{DISTRIBUTOR}\t{address}\t{cumulative}\t{amount}\t{deadline}\t{sig}\t"
            f"{status}\t{tx_field}\t{block if status == 'confirmed' else NULL}\t{_ts(when)}\t"
            f"{_ts(when) if tx_field else NULL}\t{confirmed}\t{expired}\n"
        )
        if status == "confirmed":
            events.append(
                f"{CHAIN_ID}\t{DISTRIBUTOR}\t{address}\t{amount}\t{cumulative}\t{block}\t"
                f"0x{rnd.getrandbits(256):064x}\t{tx}\t0\t{confirmed}\n"
            )
            cumulative_confirmed = cumulative
    claim.close()
    w = Writer(
        cur,
        "rewards_claimevent",
        "chain_id, distributor, account, amount_wei,"
        " cumulative_wei, block_number, block_hash, tx_hash, log_index, seen_at",
    )
    for row in events:
        w.add(row)
    w.close()
