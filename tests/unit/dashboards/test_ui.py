from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

pytest.importorskip("panel")
# Panel 1.9's Tabulator calls reset_index(inplace=True), which pandas 3.1 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")

from bokeh.models import ColumnDataSource  # noqa: E402

from obsbench.dashboards import ui  # noqa: E402


def test_table_patches_only_changed_cells():
    table = ui.Table(["name", "value"])
    table.update(pl.DataFrame({"name": ["a", "b", "c"], "value": [1.0, 2.0, None]}))
    calls = []
    original = table.widget.patch
    table.widget.patch = lambda patch, as_index: (calls.append(patch), original(patch, as_index))
    table.update(pl.DataFrame({"name": ["a", "b", "c"], "value": [1.0, 5.0, None]}))
    assert calls == [{"value": [(1, 5.0)]}]
    table.update(pl.DataFrame({"name": ["a", "b", "c"], "value": [1.0, 5.0, None]}))
    assert len(calls) == 1  # nothing changed: nothing sent


def test_table_replaces_on_new_shape():
    table = ui.Table()
    table.update(pl.DataFrame({"x": [1]}))
    table.update(pl.DataFrame({"x": [1, 2]}))
    assert table.widget.value["x"].tolist() == [1, 2]


def test_chart_source_patches_streams_and_replaces(monkeypatch):
    src = ColumnDataSource({"x": np.array([1.0, 2.0]), "y": np.array([10.0, 20.0])})
    events = []
    monkeypatch.setattr(ColumnDataSource, "patch", lambda self, p: events.append(("patch", p)))
    monkeypatch.setattr(
        ColumnDataSource,
        "stream",
        lambda self, s: events.append(("stream", {k: list(v) for k, v in s.items()})),
    )
    ui._sync(src, {"x": np.array([1.0, 2.0, 3.0]), "y": np.array([10.0, 21.0, 30.0])})
    assert events == [("patch", {"y": [(1, 21.0)]}), ("stream", {"x": [3.0], "y": [30.0]})]
    ui._sync(src, {"x": np.array([2.0, 3.0]), "y": np.array([21.0, 30.0])})  # window slid
    assert list(src.data["x"]) == [2.0, 3.0]


def test_number_sends_only_changed_text():
    n = ui.Number("P&L")
    n.update(1234.4, signed=True)
    first = n.text
    assert "1,234" in first
    assert "#1e7d32" in first
    n.update(1234.2, signed=True)
    assert n.text is first
    n.update(-5.0, signed=True)
    assert "#b71c1c" in n.text
    n.update(float("nan"))
    assert "–" in n.text


def test_line_chart_groups_series():
    chart = ui.LineChart("t", y="v", by="g")
    ts = [datetime(2026, 1, 1, 12, m, tzinfo=UTC) for m in range(3)]
    chart.update(pl.DataFrame({"ts": ts * 2, "g": ["a"] * 3 + ["b"] * 3, "v": range(6)}))
    assert set(chart.sources) == {"a", "b"}
    assert list(chart.sources["b"].data["y"]) == [3.0, 4.0, 5.0]


def test_heatmap_patches_values_in_place(monkeypatch):
    heat = ui.Heatmap("h", x="x", y="y", value="v")
    frame = pl.DataFrame({"x": ["a", "b"], "y": ["r", "r"], "v": [0.5, -1.0]})
    heat.update(frame)
    calls = []
    monkeypatch.setattr(ColumnDataSource, "patch", lambda self, p: calls.append(p))
    heat.update(frame.with_columns(v=pl.Series([0.5, -2.0])))
    assert calls == [{"v": [(1, -2.0)]}]
    assert (heat.mapper.low, heat.mapper.high) == (-2.0, 2.0)


def test_live_table_sends_changed_columns_computed_once_for_all_sessions():
    from obsbench.dashboards.ui import _cds_patch_between

    sessions = [ui.LiveTable(["name", "value", "missing"]) for _ in range(2)]
    first = pl.DataFrame({"name": ["a", "b"], "value": [1.0, float("nan")]})
    second = pl.DataFrame({"name": ["a", "b"], "value": [2.0, float("nan")]})
    for table in sessions:
        table.update(first)
        assert table.source.data["missing"] == [None, None]
    names = sessions[0].source.data["name"]
    for table in sessions:
        table.update(second)
        table.update(second)  # the same object again: nothing to do
        assert table.source.data["value"][0] == 2.0
    assert sessions[0].source.data["name"] is names  # unchanged column not re-sent
    a, b = (t._shown_selected for t in sessions)
    assert a is b  # one selection shared by both sessions
    patch = _cds_patch_between(sessions[0]._shown_selected, a, {})
    assert patch is _cds_patch_between(sessions[0]._shown_selected, b, {})
    third = pl.DataFrame({"name": ["a"], "value": [3.0]})
    sessions[0].update(third)  # reshaped: replaced
    assert sessions[0].source.data["value"] == [3.0]


def test_changed_positions_treat_nan_as_equal_and_none_as_different():
    nan = float("nan")
    assert ui._differing([1.0, nan, None, "a"], [1.0, nan, nan, "b"]) == [2, 3]
    assert ui._differing([], []) == []


def test_toasts_are_one_string_change_without_new_models():
    import json

    toaster = ui.Toaster()
    assert toaster.div.js_property_callbacks["change:text"]  # the browser opens them
    toaster.show([("error", "CRITICAL <Rule> firing", 6000), ("success", "resolved", 6000)])
    first = json.loads(toaster.div.text)
    assert [t["type"] for t in first["toasts"]] == ["error", "success"]
    assert first["toasts"][0]["message"] == "CRITICAL &lt;Rule&gt; firing"  # escaped
    toaster.show([("error", "CRITICAL <Rule> firing", 6000), ("success", "resolved", 6000)])
    assert toaster.div.text != json.dumps(first)  # the same batch again still changes
    before = toaster.div.text
    toaster.show([])
    assert toaster.div.text == before  # nothing to show: nothing sent


def test_derived_values_are_shared_per_frame_and_freed_with_it():
    """Every session showing a frame gets the same derived object; none outlives the frame."""
    import gc

    frame = pl.DataFrame({"name": ["a", "b"], "value": [1.0, 2.0]})
    first = ui._to_pandas(frame)
    assert ui._to_pandas(frame) is first  # the second session reuses the conversion
    assert ui._select(frame, ("value",)) is ui._select(frame, ("value",))
    fid = id(frame)
    assert fid in ui._DERIVED
    del frame
    gc.collect()
    assert fid not in ui._DERIVED  # freed with the frame (was: held by an LRU of 256)


def test_patch_cache_tells_a_reused_id_apart():
    """A patch cached under old's id is not served for another frame that got that id."""
    new = pl.DataFrame({"x": [1.0, 2.0]})
    old = pl.DataFrame({"x": [1.0, 3.0]})
    assert ui._changed_cells(old, new, "cds", lambda c, i: i) == {"x": [(1, 1)]}
    source, _ = ui._DERIVED[id(new)][("patch", "cds", id(old))]
    del old  # an unrelated frame with the old id must be compared afresh
    assert source() is None
    same = pl.DataFrame({"x": [1.0, 2.0]})
    assert ui._changed_cells(same, new, "cds", lambda c, i: i) == {}
