"""From `make run` in a fresh clone to a full dashboard, as a newcomer sees it.

    python3 bench/demo/run.py [--where $TMPDIR/omnitensor-fresh] [--port 8000]

Clones this repository (its committed state) into `--where/main`, with nothing beside it (no
`../shared`) and no virtualenv, runs `make run` there, signs in as alice through the demo
sign-in API and polls until her dashboard shows earnings from the week of history and her
earlier claim is confirmed on the demo chain. Prints the time of each step from `make run`:
the virtualenv, the web process answering, the first earnings, the confirmed claim. Stops the
processes after. Uses ports `--port` and 8545 (the demo chain); run it on an idle machine.
"""

import argparse
import http.cookiejar
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EARNED = re.compile(r'Earned, last 24 h</span>\s*<span class="stat-value">([\d,.]+)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--where", default=str(Path(tempfile.gettempdir()) / "omnitensor-fresh"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--timeout", type=int, default=1500)
    args = parser.parse_args()

    where = Path(args.where)
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    clone = where / "main"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    base = f"http://127.0.0.1:{args.port}"
    log = (where / "make-run.log").open("w")
    started = time.time()
    proc = subprocess.Popen(
        ["make", "run", f"PORT={args.port}"], cwd=clone, stdout=log, stderr=subprocess.STDOUT
    )
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        if name not in marks:
            marks[name] = round(time.time() - started, 1)
            print(f"{marks[name]:7.1f} s  {name}", flush=True)

    try:
        while time.time() - started < args.timeout and proc.poll() is None:
            time.sleep(2)
            if (clone / ".venv" / "bin" / ".installed").exists():
                mark("virtualenv ready")
            try:
                opener.open(f"{base}/healthz", timeout=10)
                mark("web answers /healthz")
                if "signed in as alice" not in marks:
                    opener.open(f"{base}/signin/", timeout=10)
                    csrf = next(c.value for c in jar if c.name == "csrftoken")
                    request = urllib.request.Request(  # noqa: S310 - http to 127.0.0.1 only
                        f"{base}/auth/demo",
                        data=json.dumps({"name": "alice"}).encode(),
                        headers={
                            "Content-Type": "application/json",
                            "X-CSRFToken": csrf,
                            "Referer": f"{base}/signin/",
                        },
                    )
                    opener.open(request, timeout=10)
                    mark("signed in as alice")
                html = opener.open(f"{base}/dashboard/", timeout=10).read().decode()
                found = EARNED.search(html)
                if found and float(found.group(1).replace(",", "")) > 0:
                    mark(f"dashboard shows {found.group(1)} OMNIT earned in 24 h")
                    body = opener.open(f"{base}/api/v1/me/claims", timeout=10).read()
                    claims = json.loads(body).get("claims", [])
                    if any(c.get("status") == "confirmed" for c in claims):
                        mark("earlier claim confirmed on the demo chain: full dashboard")
                        break
            except (OSError, StopIteration, ValueError):
                continue
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["pkill", "-f", str(clone / ".venv")], check=False)
    print(json.dumps(marks))
    return 0 if any("full dashboard" in m for m in marks) else 1


if __name__ == "__main__":
    sys.exit(main())
