"""A database that is down: SourceUnavailable, or a local spool replayed in order later.

PostgreSQL goes "down" behind a TCP proxy the test stops and restarts; SQLite goes down by
its folder being a file (the database cannot be opened) until the test removes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from obsbench import audit
from obsbench.audit.spool import Spool
from obsbench.errors import AuditError, SourceUnavailable


class Proxy:
    """A TCP proxy to PostgreSQL on a fixed local port that can be stopped and restarted."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept()
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns.clear()


class Outage:
    """Switch a database between up and down (same URL throughout)."""

    def __init__(self, kind: str, tmp_path: Path, pg_url: str | None) -> None:
        self.kind = kind
        if kind == "postgresql":
            assert pg_url is not None
            self.proxy = Proxy()
            self.url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{self.proxy.port}")
        else:
            self.folder = tmp_path / "db"
            self.url = f"sqlite:///{self.folder / 'audit.db'}"

    def up(self) -> None:
        if self.kind == "postgresql":
            self.proxy.start()
        else:
            self.folder.mkdir(exist_ok=True)

    def down(self) -> None:
        if self.kind == "postgresql":
            self.proxy.stop()  # open connections die, new ones are refused
            return
        # The folder moves aside and a file takes its place: SQLite cannot open the database.
        # Open SQLite connections would keep writing to the moved file, so the cached store
        # is dropped, as in a process that starts while the disk is gone.
        audit.close_store(self.url)
        if self.folder.is_dir():
            self.folder.rename(self.folder.with_name("db.away"))
        self.folder.write_text("not a folder")

    def restore(self) -> None:
        """Back up, with the data it had."""
        if self.kind == "postgresql":
            self.proxy.start()
            return
        self.folder.unlink()
        self.folder.with_name("db.away").rename(self.folder)


@pytest.fixture(params=["sqlite", "postgresql"])
def outage(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[Outage]:
    pg = request.getfixturevalue("pg_schema") if request.param == "postgresql" else None
    o = Outage(request.param, tmp_path, pg)
    yield o
    audit.close_store(o.url)
    if o.kind == "postgresql":
        o.proxy.stop()


def test_down_database_raises_source_unavailable_without_spool(outage: Outage) -> None:
    outage.down()
    with pytest.raises(SourceUnavailable, match=r"cannot connect|cannot be opened"):
        audit.record("user:alice", "login", url=outage.url)
    assert len(Spool.for_url(outage.url)) == 0


def test_bad_event_is_rejected_before_spooling(outage: Outage) -> None:
    with pytest.raises(AuditError):
        audit.record("user:alice", "no_such_action", url=outage.url, spool=True)
    assert len(Spool.for_url(outage.url)) == 0


def test_spooled_events_are_replayed_in_order_once_the_database_is_back(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    outage.up()
    first = audit.record("user:alice", "login", "service/auth", url=outage.url)
    assert first.seq == 1
    outage.down()  # the cached store's connections die mid-life
    secret = "alice.martin@example.com"
    with caplog.at_level(logging.INFO, logger="obsbench"):
        spooled = [
            audit.record(
                "user:alice",
                "config_change",
                f"service/s{i}/config",
                {"before": i, "after": i + 1, "contact": secret},
                url=outage.url,
                spool=True,
            )
            for i in range(3)
        ]
    assert [(e.spooled, e.seq) for e in spooled] == [(True, None)] * 3
    spool = Spool.for_url(outage.url)
    assert len(spool) == 3
    assert secret not in spool.path.read_text()  # masked before spooling
    assert secret not in caplog.text
    outage.restore()
    after = audit.record("user:bob", "logout", url=outage.url, spool=True)
    assert after.seq == 5  # the three spooled events went first
    assert len(spool) == 0
    events = audit.search(url=outage.url, limit=10).sort("seq")
    assert events["event_id"].to_list() == [
        first.event_id,
        *(e.event_id for e in spooled),
        after.event_id,
    ]
    assert [json.loads(d).get("before") for d in events["details"][1:4]] == [0, 1, 2]
    assert audit.verify(url=outage.url).ok


def test_replay_skips_events_already_stored(outage: Outage) -> None:
    outage.up()
    store = audit.open_store(outage.url)
    stored = store.record("user:alice", "login")
    spool = Spool.for_url(outage.url)
    # a crash between commit and truncation leaves a committed event in the spool
    spool.append([store.prepare(actor="user:alice", action="login", event_id=stored.event_id)])
    spool.append([store.prepare(actor="user:bob", action="login", event_id="new-one")])
    assert audit.replay_spool(outage.url) == 1
    assert store.count() == 2
    assert audit.verify(url=outage.url).ok


def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    from obsbench.audit.events import prepare

    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([prepare(actor="u", action="login", event_id="ok")])
    with spool.path.open("a") as fh:
        fh.write('{"actor": "u", "act')
    assert [e.event_id for e in spool.read()] == ["ok"]
