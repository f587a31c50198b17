"""The portal's WSGI application, recording the SQL of requests the bench marks.

A request with the header `X-Bench-Capture: <name>` has every statement it runs appended to
`$BENCH_CAPTURE_DIR/<name>.jsonl` as it starts and as it ends (with its duration), including
the statements a streaming response runs while its body is sent. Lines are flushed one by one,
so when gunicorn kills a worker that ran past its timeout the file still says which statement
it was waiting for. Every other request goes straight to the portal.
"""

import json
import os
import re
import tempfile
import time
from pathlib import Path

from portal.wsgi import application as portal_application

CAPTURE_DIR = Path(os.environ.get("BENCH_CAPTURE_DIR") or tempfile.gettempdir())
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


class _Recorder:
    def __init__(self, path: Path):
        self.file = path.open("a", buffering=1)
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        index = self.count
        # Parameters too (as text), so the bench can EXPLAIN the slow statements afterwards.
        shown = None if many or params is None else [None if p is None else str(p) for p in params]
        self.file.write(json.dumps({"i": index, "sql": sql, "params": shown}) + "\n")
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            ms = (time.perf_counter() - began) * 1000
            self.file.write(json.dumps({"i": index, "ms": round(ms, 3)}) + "\n")


class _Closing:
    """The response body; stops recording when the server closes it."""

    def __init__(self, body, stop):
        self.body, self.stop = body, stop

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.stop()


def application(environ, start_response):
    name = environ.get("HTTP_X_BENCH_CAPTURE", "")
    if not name or not NAME.match(name):
        return portal_application(environ, start_response)
    from django.db import connection

    CAPTURE_DIR.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(CAPTURE_DIR / f"{name}.jsonl")
    connection.execute_wrappers.append(recorder)

    def stop():
        if recorder in connection.execute_wrappers:
            connection.execute_wrappers.remove(recorder)
        recorder.file.close()

    try:
        body = portal_application(environ, start_response)
    except BaseException:
        stop()
        raise
    return _Closing(body, stop)
