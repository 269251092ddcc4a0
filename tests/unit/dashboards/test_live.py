from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from obsbench.dashboards.live import LiveModel, SourceState, _Tail
from obsbench.errors import ConfigError

from .conftest import advance


class FakeDoc:
    """A Bokeh document stand-in: runs next-tick callbacks at once."""

    def __init__(self) -> None:
        self.calls = 0

    def add_next_tick_callback(self, fn):
        self.calls += 1
        fn()


class ClosedDoc:
    def add_next_tick_callback(self, fn):
        msg = "session destroyed"
        raise RuntimeError(msg)


@pytest.mark.parametrize("interval", [0, -1, 5.01, 60])
def test_interval_must_be_within_five_seconds(home, interval):
    from obsbench.store import Store

    with pytest.raises(ConfigError, match=r"must be in \(0, 5\] s"):
        LiveModel(Store(home), interval=interval)


def test_groups_never_refresh_less_often_than_five_seconds(home):
    from obsbench.store import Store

    model = LiveModel(Store(home), interval=2.0, every={"quotas": 10, "risk": 1})
    assert model.every["quotas"] * model.interval <= 5
    assert model.every["risk"] == 1


def test_tail_reads_only_new_files(live_store):
    store, sim = live_store
    tail = _Tail(store, "quotes")
    first = tail.new_files()
    assert first
    assert tail.new_files() == []
    advance(store, sim, 2)
    new = tail.new_files()
    assert len(new) == 1
    assert tail.read(new).height > 0


def test_tick_loads_the_day_and_follows_new_data(live_store):
    store, sim = live_store
    model = LiveModel(store)
    snap = model.tick()
    assert snap.version == 1
    assert snap.data_now is not None
    assert snap.get("pnl_book")["today"] is not None
    requests_before = snap.get("services").select("requests").sum().item()
    advance(store, sim, 3)
    for _ in range(3):
        model.tick()
    snap2 = model.tick()  # services refresh every 4 ticks: 1, then 5 (tick + offset 3)
    assert "services" in snap2.changed
    assert snap2.data_now > snap.data_now
    assert snap2.get("services").select("requests").sum().item() > requests_before
    assert snap2.stale_since(["pnl", "services"]) is None


def test_a_direct_tick_waits_for_the_thread_s_tick(live_store, monkeypatch):
    """The model thread and a caller ticking at once must not see half-loaded frames."""
    import threading

    store, _ = live_store
    model = LiveModel(store)
    tail = model._tails["orders"]
    reading = threading.Event()
    slow_read = tail.read

    def read(files, **kw):
        reading.set()
        time.sleep(0.3)  # widen the window in which the other tick would interleave
        return slow_read(files, **kw)

    monkeypatch.setattr(tail, "read", read)
    other = threading.Thread(target=model.tick)
    other.start()
    assert reading.wait(5)
    model.tick()
    assert model.data_bytes() > 0
    other.join(5)
    assert model._tick == 2


def test_tailed_frames_do_not_pile_up_chunks(live_store):
    """Each tick appends a chunk; a day of ticks must not leave 86,400 of them."""
    from obsbench.dashboards.live import MAX_CHUNKS

    store, sim = live_store
    model = LiveModel(store)
    model.tick()
    before = {name: getattr(model._frames, name).height for name in ("quotes", "requests")}
    for _ in range(2 * MAX_CHUNKS):
        advance(store, sim, 1)
        model.tick()
    for name in ("quotes", "orders", "fills", "requests", "api_usage"):
        chunks = getattr(model._frames, name).n_chunks("all")
        assert max(chunks) <= MAX_CHUNKS + 1, (name, chunks)
    for name, height in before.items():  # the rows are all there: only their layout changed
        assert getattr(model._frames, name).height > height


def test_snapshot_is_pushed_once_per_tick_to_each_session(live_store):
    store, sim = live_store
    model = LiveModel(store)
    docs = [FakeDoc(), FakeDoc()]
    got: list[list[int]] = [[], []]
    for doc, seen in zip(docs, got, strict=True):
        model.subscribe(doc, lambda s, seen=seen: seen.append(s.version), groups=["pnl"])
    model.tick()
    advance(store, sim)
    model.tick()
    assert got == [[1, 2], [1, 2]]
    sessions, cost_ms = model.push_cost(2)
    assert sessions == 2
    assert cost_ms >= 0


def test_only_groups_some_session_needs_are_computed(live_store):
    store, _ = live_store
    model = LiveModel(store)
    model.subscribe(FakeDoc(), lambda s: None, groups=["services"])
    snap = model.tick()
    assert "services" in snap.changed
    assert "risk" not in snap.changed
    assert snap.get("exposure_strategy") is None
    assert snap.states["risk"].idle


def test_a_closed_session_is_dropped(live_store):
    store, _ = live_store
    model = LiveModel(store)
    model.subscribe(ClosedDoc(), lambda s: None)
    assert model.sessions == 1
    model.tick()
    assert model.sessions == 0


def test_unknown_group_is_refused(live_store):
    store, _ = live_store
    with pytest.raises(ConfigError, match="unknown view group"):
        LiveModel(store).subscribe(FakeDoc(), lambda s: None, groups=["nope"])


def test_stopped_source_goes_stale_and_recovers(live_store):
    store, sim = live_store
    model = LiveModel(store, stale_after=0.2)
    model.tick()
    advance(store, sim)
    assert model.tick().stale_since(["pnl"]) is None

    time.sleep(0.3)
    stale = model.tick()  # no new file since the last tick
    since = stale.stale_since(["pnl"])
    assert since is not None
    assert since == stale.states["market"].last_ok
    assert [(state.name, when) for state, when in stale.stale(["pnl"])] == [("market", since)]
    advance(store, sim)
    assert model.tick().stale_since(["pnl"]) is None


def test_a_failing_view_keeps_the_last_values_and_is_stale(live_store, monkeypatch):
    from obsbench.dashboards import views

    store, _ = live_store
    model = LiveModel(store)
    good = model.tick().get("pnl_by_strategy")

    def broken(live, hist):
        msg = "boom"
        raise RuntimeError(msg)

    monkeypatch.setitem(views.LIVE_GROUPS, "pnl", broken)
    snap = model.tick()
    assert snap.get("pnl_by_strategy") is good
    assert "boom" in snap.states["pnl"].error
    assert snap.stale_since(["pnl"]) is not None
    assert snap.stale_since(["services"]) is None
    assert [state.name for state, _ in snap.stale(["pnl", "services"])] == ["pnl"]


def test_source_state_stale_rules():
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    fresh = SourceState("x", last_ok=t0)
    assert fresh.stale_since(t0 + timedelta(seconds=4), stale_after=5) is None
    assert fresh.stale_since(t0 + timedelta(seconds=6), stale_after=5) == t0
    slow = SourceState("y", last_ok=t0, period=30)
    assert slow.stale_since(t0 + timedelta(seconds=20), stale_after=5) is None
    failing = SourceState("z", last_ok=t0, error="down")
    assert failing.stale_since(t0, stale_after=5) == t0
    never = SourceState("w", error="down")
    assert never.stale_since(t0, stale_after=5) == t0
    assert SourceState("v", idle=True, error="x").stale_since(t0, stale_after=5) is None


def test_model_thread_ticks_and_stops(live_store):

    store, _ = live_store
    model = LiveModel(store, interval=0.2).start()
    try:
        deadline = time.monotonic() + 10
        while model.snapshot.version < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        model.stop()
    assert not model._thread.is_alive()


def test_heavy_groups_take_turns(live_store):
    store, _ = live_store
    model = LiveModel(store)
    model.subscribe(FakeDoc(), lambda s: None, groups=["services", "execution", "risk", "pnl"])
    changed = [model.tick().changed for _ in range(9)]
    assert all(len(c & {"services", "execution", "risk", "pnl"}) == 4 for c in changed[:1])
    heavy = [c & {"services", "execution", "risk", "pnl"} for c in changed[1:]]
    # after the first tick (everything, for the page just opened): one heavy group a tick,
    # two one tick in four, and each of them within every 4 ticks (P&L within every 2)
    assert sorted(len(h) for h in heavy) == [1] * 6 + [2] * 2
    for group, period in (("pnl", 2), ("services", 4), ("execution", 4), ("risk", 4)):
        ran = [i for i, h in enumerate(heavy) if group in h]
        assert ran, group
        assert max(b - a for a, b in zip([-1, *ran], [*ran, len(heavy)], strict=True)) <= period
    # each tick's cost names the groups it computed
    computed = [set(c["groups_ms"]) for c in model.tick_costs]
    assert [c - {"history"} for c in computed] == [set(c) - {"history"} for c in changed]


class LaterDoc:
    """A busy event loop: callbacks wait until run_all()."""

    def __init__(self) -> None:
        self.queue = []

    def add_next_tick_callback(self, fn):
        self.queue.append(fn)

    def run_all(self):
        queue, self.queue = self.queue, []
        for fn in queue:
            fn()


def test_a_busy_session_gets_one_update_with_the_newest_snapshot(live_store):
    store, sim = live_store
    model = LiveModel(store)
    doc = LaterDoc()
    seen = []
    model.subscribe(doc, lambda s: seen.append(s.version), groups=["pnl"])
    for _ in range(3):
        advance(store, sim)
        model.tick()
    assert len(doc.queue) == 1
    assert model.skipped == 2
    doc.run_all()
    assert seen == [3]
    model.tick()
    doc.run_all()
    assert seen == [3, 4]


def test_report_runs_are_read_for_the_reports_page(live_store):
    from obsbench.reports.history import History

    store, _ = live_store
    history = History()
    history.start(run_id="r1", report="sla", parameters={"month": "2026-11"})
    history.finish("r1", status="failed", error="cell 3 failed")
    history.close()
    model = LiveModel(store)
    model.subscribe(FakeDoc(), lambda s: None, groups=["reports"])
    runs = model.tick().get("report_runs")
    assert runs.select("report", "status", "parameters", "error").rows() == [
        ("sla", "failed", '{"month": "2026-11"}', "cell 3 failed")
    ]


def test_push_cpu_counts_the_handlers_cpu_time(live_store):
    store, _ = live_store
    model = LiveModel(store)

    def busy(_snap):

        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass

    model.subscribe(FakeDoc(), busy, groups=["pnl"])
    model.tick()
    assert model.push_cpu(1) >= 20.0
    assert model.push_cpu(99) == 0.0  # unknown tick


def test_a_tick_checks_the_days_frames_once(live_store, monkeypatch, request):
    """pnl, activity, execution and risk all receive the day's orders: one check a tick."""
    from obsbench.metrics import risk

    store, _ = live_store
    model = LiveModel(store)
    model.tick()  # the first tick loads the day
    checked: list[str] = request.getfixturevalue("validated")  # counting from here on
    marked: list[bool] = []
    real_mark = risk._mark
    monkeypatch.setattr(risk, "_mark", lambda *args: marked.append(args[-1]) or real_mark(*args))
    for _ in range(3):  # ticks 2-4: P&L, execution, risk, activity all run
        model.tick()
    # the risk page's 4 exposures, limits and 2 stress tests mark the positions once each
    # way (with and without sectors), not 7 times
    assert sorted(marked) == [False, True]
    # the day's orders once a tick, and execution's window of them once
    assert checked.count("orders") == 3 + 1
    assert model.snapshot.stale_since(["pnl", "activity", "execution", "risk"]) is None


@pytest.mark.parametrize(
    ("read_before", "expected"),
    [
        pytest.param(3, 0, id="all-merged-parts-read: nothing new (was: the day twice)"),
        pytest.param(2, 1, id="some-read: only the unread part"),
        pytest.param(0, 3, id="none-read: the compacted file"),
    ],
)
def test_tail_reads_each_row_of_a_compacted_sparse_dataset_once(live_store, read_before, expected):
    """A sparse dataset's parts merged long after the tail read them are not read again."""
    store, _ = live_store
    day = store.read("orders")
    store.clear()
    tail = _Tail(store, "orders")
    for i in range(3):
        store.append("orders", day.slice(i, 1), validate=False)
        time.sleep(0.002)  # distinct write timestamps
        if i + 1 == read_before:
            assert tail.read(tail.new_files()).height == read_before
    tail._floor = tail._newest + 1  # the grace has passed: the parts' names are forgotten
    tail._seen.clear()
    assert store.compact("orders", min_age_s=0, grace_s=3600) == 3
    assert tail.read(tail.new_files()).height == expected
    assert tail.new_files() == []
