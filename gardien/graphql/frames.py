"""WebSocket frames encoded once and written straight to each connection's socket (EVT-1).

A live event reaches thousands of subscribers as the same `next` frame. Sent through ASGI, each
copy is a coroutine that passes Starlette's and uvicorn's checks and has websockets build the
frame again: tens of microseconds per subscriber, a good part of a second per event for 10,000.
A server's frame is not masked (RFC 6455 §5.3), so its bytes are the same for every connection:
`text_frame` builds them once and a `FrameWriter` hands them to each socket's transport.

The writer needs uvicorn's websockets-sansio protocol, which `gardien serve` runs: its ASGI `send`
is a method of the protocol that owns the transport. `DirectFramesMiddleware`, outermost, finds it
before any wrapper and leaves a writer in the scope; under another server there is none and the
transport sends through ASGI as before.

Writing beside the protocol's own state machine is sound because it only ever writes whole,
unfragmented data frames, each with one `transport.write` (so never inside another frame), and
refuses - the caller then sends through ASGI - once a close frame was sent, the peer is gone, or
the transport's buffer is past its high-water mark (uvicorn's `send` waits for it to drain; a
slow reader's frames then queue on its connection, bounded).
"""

from __future__ import annotations

import struct
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SCOPE_KEY = "gardien.frame_writer"
_TEXT_FIN = 0x81  # FIN bit and the text opcode


def text_frame(data: bytes) -> bytes:
    """A final, unmasked text frame carrying `data` (UTF-8), as a server sends it."""
    length = len(data)
    if length < 126:
        header = bytes((_TEXT_FIN, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", _TEXT_FIN, 126, length)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, length)
    return header + data


class FrameWriter:
    """Writes encoded frames to one connection's transport while it can take them at once."""

    __slots__ = ("_protocol", "_writable")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        # Cleared by the protocol while the transport's buffer is past its high-water mark.
        self._writable = protocol.writable

    def write(self, frame: bytes) -> bool:
        """False when the frame must go through ASGI instead (closing, or a full buffer)."""
        protocol = self._protocol
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.handshake_complete
            or not self._writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(frame)
        return True


def frame_writer(scope: Scope) -> FrameWriter | None:
    writer: Any = scope.get(SCOPE_KEY)
    return writer if isinstance(writer, FrameWriter) else None


class DirectFramesMiddleware:
    """Outermost: gives WebSocket connections served by websockets-sansio a FrameWriter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            protocol = getattr(send, "__self__", None)
            if isinstance(protocol, WebSocketsSansIOProtocol):
                scope[SCOPE_KEY] = FrameWriter(protocol)
        await self.app(scope, receive, send)
