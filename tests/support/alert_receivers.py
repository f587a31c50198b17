"""The far ends of alert deliveries, real and on loopback: an SMTP server (aiosmtpd), an HTTP
server that records and answers webhook and Apprise requests, the check a webhook receiver runs
on our signature (written from the README's description, not with the portal's code), and the
delivery tasks a test's own queue holds.
"""

import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from portal.celery_app import app as celery_app
from tests.support.processes import free_port

DELIVER_TASK = "contributors.deliver_alert"


# --- SMTP -------------------------------------------------------------------------------------


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that accepts every message and keeps it."""

    def __init__(self):
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        with self._lock:
            self.messages.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    def start(self) -> "SmtpSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def received(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [
                m for m, rcpt in zip(self.messages, self.recipients, strict=True) if address in rcpt
            ]


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self):
        return json.loads(self.body)


def signature_ok(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """What a webhook receiver checks: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`,
    recent, compared in constant time."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        stamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - stamp) <= tolerance_s and hmac.compare_digest(expected, given)


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1 that records every request, then answers `status`
    with `headers`. With `secret` set it acts as a careful webhook receiver: a request whose
    signature does not verify gets 401. `hold(n)` keeps the next n requests open, unanswered,
    until `release()` (or `stop()`)."""

    def __init__(self, status: int = 200, headers: dict | None = None, secret: str | None = None):
        self.status = status
        self.headers = headers or {}
        self.secret = secret
        self.requests: list[Request] = []
        self._held = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                receiver._handle(self)

            do_GET = do_PUT = do_HEAD = do_POST  # a followed redirect would GET

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def hold(self, count: int = 1) -> None:
        with self._lock:
            self._held = count
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def received(self, event: str | None = None) -> list[Request]:
        """The requests so far (those of one `X-OmniTensor-Event` kind if given)."""
        with self._lock:
            got = list(self.requests)
        if event is None:
            return got
        return [r for r in got if r.headers.get("x-omnitensor-event") == event]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            handler.command,
            handler.path,
            {k.lower(): v for k, v in handler.headers.items()},
            body,
        )
        with self._lock:
            self.requests.append(request)
            held = self._held > 0
            if held:
                self._held -= 1
        if held:
            self._release.wait(timeout=300)
        status = self.status
        if self.secret is not None and not signature_ok(
            self.secret, request.headers.get("x-omnitensor-signature", ""), body
        ):
            status = 401
        try:
            handler.send_response(status)
            for name, value in self.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass  # the sender is gone (a killed worker): nothing to answer


# --- the tasks a test's own queue holds -------------------------------------------------------


def take_queued(queue: str) -> list[tuple[str, list]]:
    """Remove every message from `queue` on the configured broker; (task name, args) of each,
    in the order they were sent."""
    taken = []
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            taken.append((message.headers.get("task"), args))
    return taken


def queued_deliveries(queue: str) -> list[int]:
    """The delivery pks of the `deliver_alert` tasks sent to `queue` (others are dropped)."""
    return [args[0] for name, args in take_queued(queue) if name == DELIVER_TASK]
