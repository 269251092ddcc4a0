"""The in-process alert bus that dashboard sessions subscribe to, and its PostgreSQL bridge.

One :class:`AlertBus` per process (:data:`bus`). A Panel session subscribes with its Bokeh
``Document``; :meth:`AlertBus.publish` may be called from any thread and fans out with
``doc.add_next_tick_callback(partial(handler, message))``, the only ``Document`` method that
is safe off the event loop, so the handler runs on the session's loop with ``curdoc`` set and
``pn.state.notifications`` works inside it (``shared/recipes/panel.md``). Without a ``doc``
the handler is called directly on the publishing thread (tests, notebooks, CLIs).

Across processes (``panel serve --num-procs``, or an evaluator in its own process), when the
database is PostgreSQL, :class:`PostgresBridge` forwards messages with ``NOTIFY`` on one
channel and a listener thread in each process republishes what it hears on the local bus;
a process ignores its own notifications (it already published them locally).

Examples
--------
>>> b = AlertBus()
>>> got = []
>>> sid = b.subscribe(got.append)
>>> b.publish({"alertname": "ApiLatencyHigh", "status": "firing"})
>>> got[0]["status"], len(b.history)
('firing', 1)
>>> b.unsubscribe(sid)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

log = logging.getLogger("obsbench.alerts.bus")

Message = dict[str, Any]
Handler = Callable[[Message], object]

PG_CHANNEL = "obsbench_alerts"
_PG_LIMIT = 7900  # NOTIFY payloads must stay under 8000 bytes


class AlertBus:
    """Thread-safe publish/subscribe of alert messages (JSON-able dicts).

    Parameters
    ----------
    history
        How many recent messages to keep (:attr:`history`), so a new session can show the
        latest alerts at once.
    """

    def __init__(self, history: int = 200) -> None:
        self._subs: dict[int, tuple[Any, Handler]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.history: deque[Message] = deque(maxlen=history)
        self.published = 0

    def subscribe(self, handler: Handler, doc: Any = None) -> int:
        """Subscribe ``handler``; with a Bokeh ``doc`` it runs on that session's loop.

        Returns the subscription id for :meth:`unsubscribe` (call it from the session's
        ``on_session_destroyed``, binding the bus and the id as default arguments).
        """
        with self._lock:
            sid = next(self._ids)
            self._subs[sid] = (doc, handler)
        return sid

    def unsubscribe(self, sid: int) -> None:
        """Remove a subscription (unknown ids are ignored)."""
        with self._lock:
            self._subs.pop(sid, None)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def publish(self, message: Message) -> None:
        """Deliver ``message`` to every subscriber; a failing subscriber is dropped.

        Every subscriber receives the same dict, in subscription order; a subscriber may
        annotate it only under private ``_``-prefixed keys (the dashboards' alert book
        stamps ``_received_ms`` for the sessions after it).
        """
        with self._lock:
            subs = list(self._subs.items())
            self.history.append(message)
            self.published += 1
        for sid, (doc, handler) in subs:
            try:
                if doc is not None:
                    doc.add_next_tick_callback(partial(handler, message))
                else:
                    handler(message)
            except Exception:  # a closed session or a broken handler must not stop the rest
                log.warning("dropping alert bus subscriber %s", sid, exc_info=True)
                self.unsubscribe(sid)


bus = AlertBus()
"""The process-wide bus (import it; do not create one per session)."""


class PostgresBridge:
    """Carry bus messages between processes with PostgreSQL ``LISTEN``/``NOTIFY``.

    Parameters
    ----------
    url
        A PostgreSQL URL (``postgresql+psycopg://...`` or ``postgresql://...``).
    local
        The bus that heard messages are published on (default :data:`bus`).
    channel
        The NOTIFY channel.
    """

    def __init__(self, url: str, local: AlertBus | None = None, channel: str = PG_CHANNEL):
        self.dsn = _dsn(url)
        self.local = local or bus
        self.channel = channel
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def notify(self, message: Message, *, conn: Any = None) -> None:
        """Send ``message`` to every listening process (not back to this one).

        With ``conn`` (a psycopg connection in a transaction) the notification is sent when
        that transaction commits; otherwise on a short-lived connection of its own.
        """
        payload = json.dumps({"origin": self.origin, "message": message}, default=str)
        if len(payload.encode()) > _PG_LIMIT:
            slim = {k: message[k] for k in ("id", "status", "alertname", "summary") if k in message}
            payload = json.dumps({"origin": self.origin, "message": {**slim, "truncated": True}})
        if conn is not None:
            conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
            return
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as c:
            c.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))

    def start(self, timeout: float = 10.0) -> PostgresBridge:
        """Start the listener thread; returns once ``LISTEN`` is active."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="alert-bus-pg", daemon=True)
            self._thread.start()
            self._ready.wait(timeout)
        return self

    def stop(self) -> None:
        """Stop the listener thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self._ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=1):
                            self._deliver(note.payload)
            except Exception:  # reconnect after a dropped connection, like any listener
                log.warning("alert bus listener lost its connection; retrying", exc_info=True)
                self._ready.set()
                self._stop.wait(1.0)

    def _deliver(self, payload: str) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            doc = json.loads(payload)
            if doc["origin"] != self.origin:
                self.local.publish(doc["message"])


def _dsn(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            url = "postgresql://" + url.removeprefix(prefix)
    return url
