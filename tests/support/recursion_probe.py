"""A task that reports its worker's recursion limit: `celery -A portal worker --include
tests.support.recursion_probe`, so a test can see what a real worker process runs with."""

import json
import os
import sys
from pathlib import Path

from portal.celery_app import app

PROBE_TASK = "tests.recursion_limit"


@app.task(name=PROBE_TASK)
def report_recursion_limit(path: str) -> None:
    Path(path).write_text(json.dumps({"pid": os.getpid(), "limit": sys.getrecursionlimit()}))
