"""bench/pages: how fast a heavy contributor's pages and API answer, on PostgreSQL + Redis.

    .venv/bin/python bench/pages/run.py [--small] [--gpus 64] [--days 90] [--others 2000]
        [--n 20] [--json out.json] [--reuse] [--no-browser]

1. Creates (drops first) the database `bench_pages` on PostgreSQL at 127.0.0.1:5432, migrates
   it and loads the dataset of issue 15 with COPY (bench/pages/load.py): one contributor with
   64 GPUs, 90 days of hourly rollups and 2,160 settled hourly epochs, minute rollups for
   their retention window, 7 days of 10-second samples, and ~4.6 M ledger entries of which
   ~276 k are theirs. `--reuse` keeps the loaded database (its times stay those of the load).
2. Starts the portal under gunicorn as in production (2 sync workers, --timeout 30, DEBUG
   false, collected static files; Redis 127.0.0.1:6379 db 12 as cache, db 13 as broker), signs
   in as that contributor (a session created with Django's session engine), and times every
   page and /api/v1/me* endpoint one request at a time, /healthz first and last as the
   baseline: 2 warm-ups, then up to --n requests or --budget-s seconds per endpoint; p50/p95 of
   time to last byte, status codes (a 5xx is reported loudly), response sizes. A first request
   that runs into the worker timeout is reported as such and the bench goes on.
3. Records the SQL of each endpoint's first request (bench/pages/capture_wsgi.py): statement
   count, time in the database, and every statement over 50 ms.
4. Times Chromium (Playwright, /usr/bin/chromium) to a drawn chart on the GPU page (30 d) and
   the rewards page (90 d) (bench/pages/draw.py).
5. Prints a table of it all and writes it as JSON to --json.
"""

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import draw  # noqa: E402
import load  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB = "bench_pages"
CACHE = "redis://127.0.0.1:6379/12"
BROKER = "redis://127.0.0.1:6379/13"
# anvil's account 1: a public development key, signs nothing of value here.
SIGNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
SLOW_MS = 50
SLOW_WARMUP_S = 5  # a first request this slow is not warmed up again: it only costs time


def portal_env(workdir: Path, worker_timeout: int) -> dict:
    return {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": f"{PG}/{DB}",
        "CACHE_URL": CACHE,
        "CELERY_BROKER_URL": BROKER,
        "STATIC_ROOT": str(workdir / "static"),
        "DOTENV_PATH": os.devnull,
        "DEMO_FLEET": "false",
        "LOG_LEVEL": "WARNING",
        "REWARD_EPOCH_S": "3600",
        "REWARD_GRACE_S": "900",
        "AGENT_REPORT_INTERVAL_S": "30",
        "AGENT_SAMPLE_INTERVAL_S": "10",
        "CHAIN_ID": str(load.CHAIN_ID),
        "DISTRIBUTOR_ADDRESS": load.DISTRIBUTOR,
        "CLAIM_SIGNER_KEY": SIGNER_KEY,
        "WEB3_PROVIDER_URI": "",
        "BENCH_CAPTURE_DIR": str(workdir / "capture"),
        "BENCH_WORKER_TIMEOUT_S": str(worker_timeout),
        "PYTHONUNBUFFERED": "1",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def collect_static(env: dict) -> str | None:
    """collectstatic as a deployment runs it; None, or what went wrong and how it was done."""
    run = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if run.returncode == 0:
        return None
    error = (run.stderr.strip().splitlines() or ["?"])[-1]
    raise SystemExit(f"collectstatic fails with the portal's settings: {error}")


# --- HTTP -----------------------------------------------------------------------------------


@dataclass
class Hit:
    status: int | None
    seconds: float
    ttfb: float | None
    size: int
    cut: str | None = None  # the body ended early: how
    error: str | None = None  # no response at all: why
    timed_out: bool = False


def fetch(port: int, path: str, cookie: str, timeout: float, worker_timeout: int,
          capture: str | None = None) -> Hit:  # fmt: skip
    headers = {"Cookie": cookie, "Accept": "*/*"}
    if capture:
        headers["X-Bench-Capture"] = capture
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    began = time.perf_counter()
    ttfb, status, size, cut, error = None, None, 0, None, None
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        ttfb = time.perf_counter() - began
        status = response.status
        try:
            while chunk := response.read(1 << 16):
                size += len(chunk)
        except http.client.IncompleteRead as exc:
            size += len(exc.partial)
            cut = "incomplete"
        except TimeoutError:
            cut = f"client timeout {timeout:.0f} s"
        except OSError as exc:
            cut = type(exc).__name__
    except TimeoutError:
        error = f"client timeout {timeout:.0f} s"
    except (http.client.HTTPException, OSError) as exc:
        error = type(exc).__name__
    finally:
        conn.close()
    seconds = time.perf_counter() - began
    hit = Hit(status, seconds, ttfb, size, cut, error)
    # gunicorn kills a sync worker that runs past --timeout: no answer, a 5xx, or a cut body.
    hit.timed_out = seconds >= worker_timeout - 0.5 and (
        status is None or status >= 500 or cut is not None
    )
    return hit


@dataclass
class Endpoint:
    name: str
    path: str
    kind: str  # page, api, export, baseline
    warmups: int = 2
    n: int = 20
    timeout: float = 60


@dataclass
class Figures:
    name: str
    path: str
    kind: str
    n: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    ttfb_p50_ms: float | None = None
    statuses: dict = field(default_factory=dict)
    bytes: int | None = None
    cut: str | None = None
    errors: list = field(default_factory=list)
    timed_out: bool = False
    warmup_ms: list = field(default_factory=list)
    queries: int | None = None
    query_ms: float | None = None
    slow_queries: list = field(default_factory=list)
    in_flight: list = field(default_factory=list)  # statements a killed worker was running


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def measure(ep: Endpoint, port: int, cookie: str, args, capture_dir: Path) -> Figures:
    fig = Figures(ep.name, ep.path, ep.kind)
    capture = slug(ep.name)
    warm, hits = [], []
    for index in range(ep.warmups):
        hit = fetch(
            port, ep.path, cookie, ep.timeout, args.timeout, capture if index == 0 else None
        )
        warm.append(hit)
        if hit.timed_out or hit.status is None or hit.seconds > SLOW_WARMUP_S:
            break
    spent = 0.0
    if not (warm and warm[0].timed_out):
        while len(hits) < ep.n:
            first = not warm and not hits
            hit = fetch(port, ep.path, cookie, ep.timeout, args.timeout, capture if first else None)
            hits.append(hit)
            spent += hit.seconds
            if hit.timed_out or hit.status is None or spent + hit.seconds > args.budget_s:
                break
    counted = hits or warm  # a page that timed out at once is reported by that one request
    times = [h.seconds * 1000 for h in counted]
    fig.n = len(hits)
    fig.warmup_ms = [round(h.seconds * 1000, 1) for h in warm]
    fig.p50_ms = round(percentile(times, 50), 1)
    fig.p95_ms = round(percentile(times, 95), 1)
    fig.min_ms, fig.max_ms = round(min(times), 1), round(max(times), 1)
    ttfbs = [h.ttfb * 1000 for h in counted if h.ttfb is not None]
    fig.ttfb_p50_ms = round(percentile(ttfbs, 50), 1) if ttfbs else None
    fig.statuses = dict(Counter(str(h.status or h.error) for h in [*warm, *hits]))
    fig.bytes = max(h.size for h in counted)
    fig.cut = next((h.cut for h in [*warm, *hits] if h.cut), None)
    fig.errors = sorted({h.error for h in [*warm, *hits] if h.error})
    fig.timed_out = any(h.timed_out for h in [*warm, *hits])
    read_capture(capture_dir / f"{capture}.jsonl", fig)
    return fig


def read_capture(path: Path, fig: Figures) -> None:
    if not path.exists():
        return
    started, params, ended = {}, {}, {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the worker was killed mid-line
        if "sql" in row:
            started[row["i"]], params[row["i"]] = row["sql"], row.get("params")
        elif "ms" in row:
            ended[row["i"]] = row["ms"]
    fig.queries = len(started)
    fig.query_ms = round(sum(ended.values()), 1)
    slow = [i for i, ms in sorted(ended.items(), key=lambda item: -item[1]) if ms >= SLOW_MS]
    slow += [i for i in started if i not in ended]  # running when the worker was killed
    for i in slow:
        row = {"ms": ended.get(i), "sql": " ".join(started[i].split())[:600]}
        row["plan"] = explain(started[i], params[i]) if i in params else None
        (fig.slow_queries if i in ended else fig.in_flight).append(row)


def explain(sql: str, params) -> list[str] | None:
    """PostgreSQL's plan for a captured statement (EXPLAIN, not run), or None."""
    import psycopg

    if not sql.lstrip().upper().startswith("SELECT"):
        return None
    try:
        with psycopg.connect(f"{PG}/{DB}", autocommit=True) as conn:
            rows = conn.execute(f"EXPLAIN {sql}", params).fetchall()
    except psycopg.Error as exc:
        return [f"(no plan: {str(exc).splitlines()[0][:120]})"]
    return [row[0] for row in rows]


def plan_summary(plan) -> str:
    """The plan's scans and sorts, e.g. 'Parallel Seq Scan on rewards_rewardentry'."""
    if not plan:
        return ""
    steps = []
    for line in plan:
        text = line.strip().removeprefix("->").strip()
        if re.match(r"(Parallel )?(Seq|Index|Index Only|Bitmap Heap|Bitmap Index) Scan|"
                    r"(Incremental )?Sort(?! Key| Method)|\(no plan", text):  # fmt: skip
            steps.append(text.split("  (")[0])
    return "; ".join(steps)[:200]


# --- the run --------------------------------------------------------------------------------


def endpoints(uuid: str, args) -> list[Endpoint]:
    now = datetime.now(UTC)
    day_ago = (now - timedelta(days=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    t = args.timeout + 15
    eps = [Endpoint("healthz (baseline)", "/healthz", "baseline", timeout=t)]
    eps += [
        Endpoint("/dashboard/", "/dashboard/", "page", timeout=t),
        Endpoint("/nodes/", "/nodes/", "page", timeout=t),
        Endpoint("/wallets/", "/wallets/", "page", timeout=t),
    ]
    eps += [
        Endpoint(f"/gpus/<uuid>/?range={r}", f"/gpus/{uuid}/?range={r}", "page", timeout=t)
        for r in ("1h", "24h", "7d", "30d")
    ]
    eps += [
        Endpoint("/rewards/ (30 d)", "/rewards/", "page", timeout=t),
        Endpoint("/rewards/?days=90", "/rewards/?days=90", "page", timeout=t),
        Endpoint("/claims/", "/claims/", "page", timeout=t),
        Endpoint("/estimate/", "/estimate/", "page", timeout=t),
        Endpoint(
            "/rewards/export.csv",
            "/rewards/export.csv",
            "export",
            warmups=0,
            n=args.export_n,
            timeout=args.export_timeout,
        ),
        Endpoint("/api/v1/me", "/api/v1/me", "api", timeout=t),
        Endpoint("/api/v1/me/gpus", "/api/v1/me/gpus", "api", timeout=t),
    ]
    eps += [
        Endpoint(
            f"/api/v1/me/gpus/<uuid>/series?range={r}",
            f"/api/v1/me/gpus/{uuid}/series?range={r}",
            "api",
            timeout=t,
        )
        for r in ("1h", "24h", "7d", "30d")
    ]
    eps += [
        Endpoint("/api/v1/me/rewards", "/api/v1/me/rewards", "api", timeout=t),
        Endpoint(
            "/api/v1/me/rewards?from=-24h",
            "/api/v1/me/rewards?" + urlencode({"from": day_ago}),
            "api",
            timeout=t,
        ),
        Endpoint(
            "/api/v1/me/rewards?limit=24 (largest page)",
            "/api/v1/me/rewards?limit=24",
            "api",
            timeout=t,
        ),
        Endpoint("/api/v1/me/balance", "/api/v1/me/balance", "api", timeout=t),
        Endpoint("/api/v1/me/claims", "/api/v1/me/claims", "api", timeout=t),
        Endpoint("/api/v1/me/wallets", "/api/v1/me/wallets", "api", timeout=t),
        Endpoint("healthz (again)", "/healthz", "baseline", timeout=t),
    ]
    for ep in eps:
        if ep.kind != "export":
            ep.n = args.n
            ep.warmups = args.warmups
    return eps


def dataset_counts(url: str) -> dict:
    import psycopg

    queries = {
        "contributors": "SELECT count(*) FROM contributors_contributor",
        "GPUs (heavy contributor)": "SELECT count(*) FROM contributors_gpu g JOIN"
        " contributors_node n ON n.id = g.node_id WHERE n.owner_id = 1",
        "GPUs (all)": "SELECT count(*) FROM contributors_gpu",
        "raw samples (heavy)": "SELECT count(*) FROM contributors_sample WHERE gpu_id IN"
        " (SELECT g.id FROM contributors_gpu g JOIN contributors_node n ON n.id = g.node_id"
        " WHERE n.owner_id = 1)",
        "raw samples (all)": "SELECT count(*) FROM contributors_sample",
        "minute rollups": "SELECT count(*) FROM contributors_gpuminute",
        "hourly rollups": "SELECT count(*) FROM contributors_gpuhour",
        "settled epochs": "SELECT count(*) FROM rewards_epoch WHERE status = 'settled'",
        "ledger entries (heavy)": "SELECT count(*) FROM rewards_rewardentry WHERE"
        " contributor_id = 1",
        "ledger entries (all)": "SELECT count(*) FROM rewards_rewardentry",
        "held-out rows (heavy)": "SELECT count(*) FROM rewards_heldout WHERE contributor_id = 1",
        "jobs": "SELECT count(*) FROM rewards_job",
        "claims": "SELECT count(*) FROM rewards_claim",
        "database size (MB)": "SELECT pg_database_size(current_database()) / 1000000",
    }
    with psycopg.connect(url) as conn:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in queries.items()}


def sign_in(heavy_id: int) -> tuple[str, str]:
    """A session for the contributor, created as django.contrib.auth.login stores one."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from contributors.models import Contributor

    user = Contributor.objects.get(pk=heavy_id)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return settings.SESSION_COOKIE_NAME, session.session_key


def start_gunicorn(env: dict, port: int, workdir: Path, worker_timeout: int):
    log = (workdir / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "capture_wsgi:application",
         "--pythonpath", f"{ROOT},{HERE}", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--worker-class", "sync", "--timeout", str(worker_timeout), "--graceful-timeout", "5"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited: see {workdir / 'gunicorn.log'}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return process
        except OSError:
            time.sleep(0.3)
    raise SystemExit("gunicorn did not answer within 60 s")


def workers(master: int) -> int:
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        count += fields[1] == str(master)
    return count


def wait_for_workers(server, boot_s: float, want: int = 2) -> None:
    """After gunicorn killed a worker: wait for its replacement to be forked and booted, so
    that the next endpoint is not timed against a worker still importing Django."""
    time.sleep(1)  # the arbiter notices the dead worker and forks another
    deadline = time.time() + 60
    while workers(server.pid) < want and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(boot_s + 1)


def stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def server_log_summary(path: Path) -> dict:
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    exceptions, in_traceback = [], False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and line and not line.startswith((" ", "\t")):
            exceptions.append(line[:300])
            in_traceback = False
    return {
        "worker_timeouts": sum("WORKER TIMEOUT" in line for line in lines),
        "server_errors": sum("Internal Server Error" in line for line in lines),
        "exceptions": sorted(Counter(exceptions).items(), key=lambda kv: -kv[1])[:10],
    }


def fmt_ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_bytes(value) -> str:
    if value is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return str(value)


def print_report(report: dict) -> None:
    if report["collectstatic"] != "ok":
        print(f"\n!!! {report['collectstatic']}")
    print("\n== dataset ==")
    for name, value in report["dataset"].items():
        print(f"  {name:<28} {value:>12,}")
    print("\n== server side: time to last byte, one request at a time ==")
    print(f"{'endpoint':<44}{'n':>4}{'p50 ms':>10}{'p95 ms':>10}  {'status':<18}"
          f"{'bytes':>10}{'SQL':>6}{'SQL ms':>9}{'>50ms':>6}")  # fmt: skip
    for f in report["endpoints"]:
        status = ",".join(f"{k}x{v}" for k, v in f["statuses"].items())
        note = " TIMEOUT" if f["timed_out"] else ""
        note += f" CUT({f['cut']})" if f["cut"] else ""
        print(f"{f['name'][:43]:<44}{f['n']:>4}{fmt_ms(f['p50_ms']):>10}{fmt_ms(f['p95_ms']):>10}"
              f"  {status[:17]:<18}{fmt_bytes(f['bytes']):>10}"
              f"{'-' if f['queries'] is None else f['queries']:>6}{fmt_ms(f['query_ms']):>9}"
              f"{len(f['slow_queries']):>6}{note}")  # fmt: skip
    print("\n== statements over 50 ms (first request of each endpoint) ==")
    for f in report["endpoints"]:
        for q in f["slow_queries"][:5] + f["in_flight"]:
            took = "(killed)" if q["ms"] is None else f"{q['ms']:,.0f} ms"
            print(f"  {f['name'][:40]:<41}{took:>10}  {q['sql'][:110]}")
            if q.get("plan"):
                print(f"  {'':<41}{'plan:':>10}  {plan_summary(q['plan'])}")
    if report.get("browser"):
        print("\n== Chromium: ms from navigation start (cold cache, then warm) ==")
        print(f"{'page':<26}{'status':>7}{'TTFB':>9}{'HTML':>9}{'DOM ready':>11}{'chart SVG':>11}"
              f"{'drawn':>9}  warm visits drawn")  # fmt: skip
        for name, result in report["browser"].items():
            if not result["visits"]:
                continue
            cold, warm = result["visits"][0], result["visits"][1:]
            print(f"{name:<26}{cold.get('status') or '-':>7}{fmt_ms(cold['ttfb_ms']):>9}"
                  f"{fmt_ms(cold['html_ms']):>9}{fmt_ms(cold['dom_content_loaded_ms']):>11}"
                  f"{fmt_ms(cold['chart_svg_ms']):>11}{fmt_ms(cold['chart_drawn_ms']):>9}  "
                  f"{', '.join(fmt_ms(v['chart_drawn_ms']) for v in warm) or '-'}"
                  f"{'  ' + cold['error'] if cold.get('error') else ''}")  # fmt: skip
            for error in result["page_errors"]:
                print(f"    page error: {error[:150]}")
    server = report["server_log"]
    print(f"\nserver log: {server['worker_timeouts']} worker timeouts, "
          f"{server['server_errors']} 'Internal Server Error' lines")  # fmt: skip
    for line, count in server["exceptions"]:
        print(f"  {count} x {line[:160]}")
    bad = [f for f in report["endpoints"] if any(k.startswith("5") for k in f["statuses"])]
    bad += [f for f in report["endpoints"] if f["timed_out"] or f["errors"] or f["cut"]]
    if bad:
        print("\n" + "!" * 78)
        for f in {id(f): f for f in bad}.values():
            print(f"!!! {f['name']}: statuses {f['statuses']}"
                  f"{' TIMED OUT' if f['timed_out'] else ''}"
                  f"{' body cut: ' + f['cut'] if f['cut'] else ''}"
                  f"{' errors: ' + ', '.join(f['errors']) if f['errors'] else ''}")  # fmt: skip
        print("!" * 78)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="8 GPUs, 7 days, 100 others")
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--minute-days", type=int, default=None,
                        help="minute rollups kept (default: --days, at most 90)")  # fmt: skip
    parser.add_argument("--raw-days", type=int, default=7)
    parser.add_argument("--others", type=int, default=2000)
    parser.add_argument("--n", type=int, default=20, help="measured requests per endpoint")
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=30,
                        help="measured seconds per endpoint before it stops early")  # fmt: skip
    parser.add_argument("--timeout", type=int, default=30, help="gunicorn --timeout")
    parser.add_argument("--export-n", type=int, default=3)
    parser.add_argument("--export-timeout", type=float, default=300)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench-pages")
    args = parser.parse_args()
    if args.small:
        args.gpus, args.days, args.raw_days, args.others = 8, 7, 1, 100
    if args.minute_days is None:
        args.minute_days = min(args.days, 90)
    began = time.perf_counter()
    phases = {}
    shutil.rmtree(args.workdir / "capture", ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = portal_env(args.workdir, args.timeout)
    os.environ.update({k: v for k, v in env.items() if k not in ("PYTHONUNBUFFERED",)})
    url = f"{PG}/{DB}"

    import psycopg

    loaded_sizes = None
    if not args.reuse:
        t = time.perf_counter()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB}")
        for app, migration in load.SCHEMA:
            manage(env, "migrate", app, migration, "--noinput", "-v0")
        sizes = load.Sizes(gpus=args.gpus, days=args.days, minute_days=args.minute_days,
                           raw_days=args.raw_days, others=args.others)  # fmt: skip
        print(f"loading {sizes} into {DB} ...")
        loaded = load.load(url, sizes)
        loaded_sizes = asdict(sizes)
        t_migrate = time.perf_counter()
        manage(env, "migrate", "--noinput", "-v0")  # auth, sessions, and what came after SCHEMA
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")  # the tables those migrations filled
        phases["migrations after the load (s)"] = round(time.perf_counter() - t_migrate, 1)
        phases["create, migrate, load (s)"] = round(time.perf_counter() - t, 1)
        phases["load steps (s)"] = loaded.seconds
    else:
        manage(env, "migrate", "--noinput", "-v0")  # the code under test may have new ones
    t = time.perf_counter()
    collectstatic_note = collect_static(env)
    phases["collectstatic (s)"] = round(time.perf_counter() - t, 1)
    counts = dataset_counts(url)

    import redis

    for db_url in (CACHE, BROKER):
        redis.Redis.from_url(db_url).flushdb()
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from contributors.models import GPU

    cookie_name, session_key = sign_in(1)
    uuid = GPU.objects.get(pk=1).uuid
    from django.db import connections

    connections.close_all()

    port = free_port()
    t = time.perf_counter()
    server = start_gunicorn(env, port, args.workdir, args.timeout)
    boot_s = time.perf_counter() - t
    results = []
    load_average = {"before HTTP": os.getloadavg()}
    try:
        cookie = f"{cookie_name}={session_key}"
        for ep in endpoints(uuid, args):
            fig = measure(ep, port, cookie, args, args.workdir / "capture")
            results.append(asdict(fig))
            if fig.timed_out or fig.errors:
                wait_for_workers(server, boot_s)
            print(f"  {ep.name:<44} n={fig.n:<3} p50 {fmt_ms(fig.p50_ms):>8} ms  "
                  f"p95 {fmt_ms(fig.p95_ms):>8} ms  {fig.statuses}"
                  f"{'  TIMED OUT' if fig.timed_out else ''}", flush=True)  # fmt: skip
        phases["HTTP (s)"] = round(time.perf_counter() - t, 1)
        browser = {}
        if not args.no_browser and draw.available():
            t = time.perf_counter()
            browser = draw.measure(
                f"http://127.0.0.1:{port}",
                {"name": cookie_name, "value": session_key},
                [("GPU page, 30 d", f"/gpus/{uuid}/?range=30d", "history-chart"),
                 ("rewards page, 90 d", "/rewards/?days=90", "daily-chart")],
                timeout_s=args.timeout + 30,
                before_each=lambda: wait_for_workers(server, boot_s),
            )  # fmt: skip
            phases["browser (s)"] = round(time.perf_counter() - t, 1)
    finally:
        stop(server)
    load_average["at the end"] = os.getloadavg()
    phases["total (s)"] = round(time.perf_counter() - began, 1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or None,
        "sizes": loaded_sizes or "reused",
        "settings": {
            "gunicorn": f"2 sync workers, --timeout {args.timeout}",
            "n": args.n,
            "warmups": args.warmups,
            "budget_s": args.budget_s,
        },
        "collectstatic": collectstatic_note or "ok",
        "dataset": counts,
        # The machine's cores are shared: a high load average makes every figure slower.
        "load_average": {k: [round(x, 2) for x in v] for k, v in load_average.items()},
        "phases": phases,
        "endpoints": results,
        "browser": browser,
        "server_log": server_log_summary(args.workdir / "gunicorn.log"),
    }
    print_report(report)
    print(f"\nphases: {json.dumps(phases)}")
    print(f"load average (1, 5, 15 min): {json.dumps(report['load_average'])}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
