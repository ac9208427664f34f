"""A real HTTP webhook receiver for the tests: verifies signatures as integrators are told to."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gardien.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify_signature
from tests.ports import free_port


@dataclass
class Received:
    event_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    signature_valid: bool
    answered: int


@dataclass
class WebhookReceiver:
    """Answers `status` to every POST (400 to a bad signature) and keeps what it was sent."""

    port: int
    now: Callable[[], int]
    secret: str = ""
    status: int = 204
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # A slow receiver: answers only once `hold` is set, or writes its answer a byte at a time.
    hold: threading.Event | None = None
    trickle_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/gardien"

    def accepted(self) -> list[Received]:
        """What the receiver processed: valid signature, answered 2xx (an integrator's view)."""
        with self.lock:
            return [r for r in self.requests if r.signature_valid and 200 <= r.answered < 300]

    def accepted_event_ids(self) -> list[str]:
        return [r.event_id for r in self.accepted()]


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            valid = verify_signature(
                receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body, receiver.now()
            )
            answered = receiver.status if valid else 400
            with receiver.lock:
                receiver.requests.append(
                    Received(
                        event_id=self.headers.get(EVENT_ID_HEADER, ""),
                        body=json.loads(body) if body else {},
                        headers={k.lower(): v for k, v in self.headers.items()},
                        signature_valid=valid,
                        answered=answered,
                    )
                )
            if receiver.hold is not None:
                receiver.hold.wait(timeout=30)
            if receiver.trickle_seconds:
                self._trickle(answered)
                return
            self.send_response(answered)
            self.send_header("content-length", "0")
            self.end_headers()

        def _trickle(self, answered: int) -> None:
            head = f"HTTP/1.1 {answered} OK\r\nx-padding: {'.' * 30}\r\ncontent-length: 0\r\n\r\n"
            try:
                for byte in head.encode():
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(receiver.trickle_seconds)
            except OSError:
                pass  # the sender gave up and closed the connection

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving(receiver: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """Serve on the receiver's port until the block ends (leaving it is an outage)."""
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def new_receiver(now: Callable[[], int]) -> WebhookReceiver:
    return WebhookReceiver(port=free_port(), now=now)
