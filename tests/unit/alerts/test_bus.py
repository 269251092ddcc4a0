"""The in-process bus, with a stand-in for a Bokeh Document (no browser)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from obsbench.alerts.bus import AlertBus
from obsbench.alerts.channels import BusChannel


class FakeDoc:
    """Like a Bokeh Document: callbacks queued from any thread run on the 'loop' thread."""

    def __init__(self) -> None:
        self.calls: queue.Queue[Callable[[], object]] = queue.Queue()
        self.loop_threads: set[str] = set()
        self.closed = False

    def add_next_tick_callback(self, cb: Callable[[], object]) -> None:
        if self.closed:
            raise RuntimeError("session destroyed")
        self.calls.put(cb)

    def run_loop(self) -> None:
        while not self.calls.empty():
            self.loop_threads.add(threading.current_thread().name)
            self.calls.get()()


def test_publish_from_threads_runs_handlers_on_the_session_loop() -> None:
    bus = AlertBus()
    docs = [FakeDoc(), FakeDoc()]
    got: list[list[dict]] = [[], []]
    for doc, sink in zip(docs, got, strict=True):
        bus.subscribe(sink.append, doc=doc)
    threads = [
        threading.Thread(target=bus.publish, args=({"n": i},), name=f"evaluator-{i}")
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [[], []]  # nothing runs off the loop
    for doc in docs:
        doc.run_loop()
        assert doc.loop_threads == {threading.current_thread().name}
    assert sorted(m["n"] for m in got[0]) == list(range(20))
    assert sorted(m["n"] for m in got[1]) == list(range(20))
    assert bus.published == 20
    assert len(bus.history) == 20


def test_destroyed_session_is_dropped_and_others_still_receive() -> None:
    bus = AlertBus()
    dead, live = FakeDoc(), FakeDoc()
    got: list[dict] = []
    bus.subscribe(got.append, doc=dead)
    bus.subscribe(got.append, doc=live)
    dead.closed = True
    bus.publish({"n": 1})
    live.run_loop()
    assert got == [{"n": 1}]
    assert bus.subscribers == 1


def test_unsubscribe_and_history_bound() -> None:
    bus = AlertBus(history=3)
    got: list[dict] = []
    sid = bus.subscribe(got.append)
    bus.publish({"n": 1})
    bus.unsubscribe(sid)
    bus.unsubscribe(sid)  # idempotent
    for i in range(2, 6):
        bus.publish({"n": i})
    assert got == [{"n": 1}]
    assert [m["n"] for m in bus.history] == [3, 4, 5]


def test_bus_channel_publishes_on_the_process_bus() -> None:
    from obsbench.alerts.bus import bus

    got: list[dict] = []
    sid = bus.subscribe(got.append)
    try:
        BusChannel(name="dashboard").send({"status": "firing", "alerts": []})
    finally:
        bus.unsubscribe(sid)
    # other subscribers (the dashboards' alert book) may stamp private `_` keys on it
    public = [{k: v for k, v in m.items() if not k.startswith("_")} for m in got]
    assert public == [{"status": "firing", "alerts": []}]
