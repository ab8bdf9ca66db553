"""A real loopback HTTP receiver for webhook tests: a threaded http.server that records every request, checks its
signature the way a receiver in the README would (its own HMAC, not ours), and answers with scripted status codes."""
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.runtime import wait_for


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    signature_ok: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def signature_valid(*, secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: parse ``t=...,v1=...``, refuse an old timestamp, compare HMAC-SHA256 of ``t.body``."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


class Receiver:
    """``with Receiver(secret=...) as r``: ``r.url``; ``r.statuses`` answers in order (then 200); ``r.delay`` seconds
    before answering; ``r.location`` for redirects; ``r.received`` lists requests."""

    def __init__(self, *, secret: str = "", statuses=(), delay: float = 0.0, body: bytes = b"ok"):
        self.secret = secret
        self.statuses = list(statuses)
        self.delay = delay
        self.body = body
        self.location = ""
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                header = self.headers.get("X-Synthstudio-Signature", "")
                ok = signature_valid(secret=receiver.secret, header=header, body=body)
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body, ok))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait_for_requests(self, n: int) -> list[Received]:
        return wait_for(lambda: len(self.received) >= n and list(self.received), what=f"{n} webhook requests")
