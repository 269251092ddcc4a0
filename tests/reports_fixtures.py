"""Local SMTP (aiosmtpd) and webhook servers on 127.0.0.1 for the report delivery tests."""

from __future__ import annotations

import email
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class Inbox:
    """Messages received by the local SMTP server."""

    host: str
    port: int
    messages: list[email.message.Message] = field(default_factory=list)


@pytest.fixture
def smtp_server() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, collecting what it receives."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # aiosmtpd's start-up check cannot use port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox("127.0.0.1", port)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            inbox.messages.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@dataclass
class Hooks:
    url: str
    received: list[dict] = field(default_factory=list)


@pytest.fixture
def webhook_server() -> Iterator[Hooks]:
    """A local HTTP server on 127.0.0.1 recording JSON POSTs."""
    hooks = Hooks("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hooks.received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hooks.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield hooks
    finally:
        server.shutdown()
        server.server_close()
