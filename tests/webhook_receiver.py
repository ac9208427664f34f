"""A real HTTP webhook receiver for the tests: verifies signatures as integrators are told to."""

from __future__ import annotations

import json
import threading
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
            self.send_response(answered)
            self.send_header("content-length", "0")
            self.end_headers()

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
