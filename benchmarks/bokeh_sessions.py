"""Real Bokeh sessions without a browser, for load tests of the dashboard server.

A :class:`WsSessions` session does what a browser tab does on the wire and nothing else:
it logs in through the form (the same login cookie), loads the page over HTTP (the server
creates the session's ``Document`` and runs the page code, exactly as for a browser),
opens the page's websocket with the session token, completes the Bokeh protocol handshake
(``ACK``, ``PULL-DOC-REQ`` -> ``PULL-DOC-REPLY``), then sends the ``document_ready`` event
a browser sends once it has rendered the page (Panel runs ``pn.state.onload`` callbacks on
it; the pages subscribe to the live model and the alert bus there). From then on it keeps
reading every ``PATCH-DOC`` the server pushes, counting bytes and messages, and records when
a text first appears (alert push latency at the websocket, without a renderer).

The server does the same per-session work as for a browser (document, page objects,
subscriptions, every update serialised and written to the socket); only the rendering is
missing, which is the client's cost, not the server's. One event-loop thread drives all
the sessions, so a benchmark can hold many sessions open on a small machine without the
renderers' CPU (a headless Chromium page costs a large share of one core while it renders
updates every second).

Used by ``bench_dashboards.py``.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r'"token"\s*:\s*"([^"]+)"')
_READY = json.dumps(
    {
        "events": [
            {
                "kind": "MessageSent",
                "msg_type": "bokeh_event",
                "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map"}},
            }
        ]
    }
)


class SessionError(RuntimeError):
    """A lightweight session could not log in, load its page or complete the handshake."""


@dataclass
class WsSession:
    """One open session: what it received and when marks were first seen."""

    slug: str
    token: str
    messages: int = 0
    bytes: int = 0
    opened_at: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)
    ws: Any = None
    reader: Any = None
    closed: bool = False


class WsSessions:
    """Open, hold and close lightweight Bokeh sessions on one background event loop.

    Parameters
    ----------
    base
        The server URL (``http://127.0.0.1:PORT``).
    user, password
        Credentials for the login form (``None``: the server runs without login).
    mark
        Regular expression whose first group names a mark (e.g. ``bench-(\\d+)``): the epoch
        ms each mark first appears in a received message is kept per session.
    """

    def __init__(
        self, base: str, user: str | None, password: str | None, mark: str | None = None
    ) -> None:
        self.base = base.rstrip("/")
        self.user = user
        self.password = password
        self.mark = re.compile(mark) if mark else None
        self.sessions: list[WsSession] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._opener = self._login()

    # -- HTTP -------------------------------------------------------------------------------
    def _login(self) -> urllib.request.OpenerDirector:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        if self.user is not None:
            body = urllib.parse.urlencode(
                {"username": self.user, "password": self.password or ""}
            ).encode()
            opener.open(f"{self.base}/login", data=body, timeout=30).read()
            if not any(c.name == "user" for c in jar):
                msg = f"login as {self.user!r} at {self.base}/login set no 'user' cookie"
                raise SessionError(msg)
        self._jar = jar
        return opener

    def _cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self._jar)

    # -- sessions ---------------------------------------------------------------------------
    def open(self, slug: str, timeout: float = 60.0) -> WsSession:
        """Load ``/slug``, connect its websocket, complete the handshake; blocks until ready."""
        page = self._opener.open(f"{self.base}/{slug}", timeout=timeout).read().decode()
        found = _TOKEN.search(page)
        if found is None:
            msg = f"/{slug}: no Bokeh session token in the page (login or access denied?)"
            raise SessionError(msg)
        session = WsSession(slug, found[1])
        future = asyncio.run_coroutine_threadsafe(self._connect(session), self._loop)
        future.result(timeout)
        self.sessions.append(session)
        return session

    def close(self, session: WsSession) -> None:
        """Close the websocket (the server drops the session after its unused lifetime)."""
        asyncio.run_coroutine_threadsafe(self._close(session), self._loop).result(10)
        if session in self.sessions:
            self.sessions.remove(session)

    def close_all(self) -> None:
        for session in list(self.sessions):
            self.close(session)

    def stop(self) -> None:
        """Close every session and stop the loop thread."""
        self.close_all()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- on the loop ------------------------------------------------------------------------
    async def _connect(self, session: WsSession) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = self.base.replace("http", "ws", 1) + f"/{session.slug}/ws"
        request = HTTPRequest(url, headers={"Cookie": self._cookie_header(), "Origin": self.base})
        ws = await websocket_connect(
            request, subprotocols=["bokeh", session.token], max_message_size=64 * 2**20
        )
        session.ws = ws
        await self._expect(session, "ACK")
        await self._send(ws, "PULL-DOC-REQ", "{}")
        await self._expect(session, "PULL-DOC-REPLY")
        await self._send(ws, "PATCH-DOC", _READY)
        session.opened_at = time.time()
        session.reader = asyncio.ensure_future(self._read(session))

    @staticmethod
    async def _send(ws: Any, msgtype: str, content: str) -> None:
        header = json.dumps({"msgid": uuid.uuid4().hex.upper(), "msgtype": msgtype})
        for frame in (header, "{}", content):
            await ws.write_message(frame)

    async def _expect(self, session: WsSession, msgtype: str) -> None:
        while True:
            frame = await session.ws.read_message()
            if frame is None:
                msg = f"/{session.slug}: websocket closed before {msgtype}"
                raise SessionError(msg)
            self._count(session, frame)
            if isinstance(frame, str) and f'"msgtype":"{msgtype}"' in frame.replace(" ", ""):
                return

    def _count(self, session: WsSession, frame: str | bytes) -> None:
        session.bytes += len(frame)
        if isinstance(frame, str):
            if frame.startswith('{"msgid"') or '"msgtype"' in frame[:80]:
                session.messages += 1
            if self.mark is not None:
                now = time.time() * 1000
                for found in self.mark.finditer(frame):
                    session.seen.setdefault(found[1], now)

    async def _read(self, session: WsSession) -> None:
        while True:
            frame = await session.ws.read_message()
            if frame is None:
                session.closed = True
                return
            self._count(session, frame)

    async def _close(self, session: WsSession) -> None:
        if session.ws is not None:
            session.ws.close()
        if session.reader is not None:
            try:
                await asyncio.wait_for(session.reader, 5)
            except (TimeoutError, asyncio.CancelledError):
                session.reader.cancel()
        session.closed = True
