"""`obsbench demo` runs the simulator and the evaluator in processes of their own."""

from __future__ import annotations

import queue
import threading
import time

from obsbench.alerts.bus import AlertBus
from obsbench.dashboards import demo
from obsbench.store import Store


def test_child_messages_are_published_on_the_server_bus():
    alerts: queue.Queue = queue.Queue()
    local = AlertBus()
    got = []
    local.subscribe(got.append)
    thread = demo.forward_alerts(alerts, local)
    alerts.put({"status": "firing", "alerts": [{"labels": {"alertname": "X"}}]})
    alerts.put(None)  # ends the forwarder
    thread.join(5)
    assert not thread.is_alive()
    assert [m["status"] for m in got] == ["firing"]


def test_an_orphaned_child_stops():
    stop = threading.Event()
    # A parent pid that is not this process's parent: as if the parent had died.
    watcher = threading.Thread(target=demo._watch_parent, args=(-1, stop), daemon=True)
    watcher.start()
    assert stop.wait(5)


def test_simulator_child_writes_the_history_then_appends_live(tmp_path):
    config = demo.demo_config(days=1, small=True)
    days = []
    child = demo.spawn_simulator(tmp_path, config, progress=lambda done, total: days.append(done))
    try:
        assert days[-1] == 1
        store = Store(tmp_path)
        before = len(store.files("quotes"))
        assert before > 0
        deadline = time.monotonic() + 20
        while len(store.files("quotes")) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(store.files("quotes")) > before  # live ticks from the child
    finally:
        child.stop()
    assert not child.process.is_alive()
