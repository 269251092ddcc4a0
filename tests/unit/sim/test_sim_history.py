from __future__ import annotations

from obsbench.sim import write_history
from obsbench.store import Store


def test_write_history_appends_each_day_and_reports_progress(tmp_path, small, small_config):
    store = Store(tmp_path)
    calls = []
    written = write_history(store, small_config, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(1, 2), (2, 2)]
    counts = store.counts()
    for name, rows in written.items():
        assert counts.get(name, 0) == rows == small[name].height
    assert "requests" in written
    assert store.read("fills").height == small["fills"].height
    days = {p.parent.name for p in store.files("quotes")}
    assert days == {"day=2024-01-01", "day=2024-01-02"}
