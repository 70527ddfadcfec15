"""The window at its default size: nothing runs off its edge, the Training tab needs no sideways scrolling, and the
task's data preview has room."""

from __future__ import annotations

from PySide6.QtCore import QPoint


def right_edge(widget, window) -> int:
    return widget.mapTo(window, QPoint(widget.width(), 0)).x()


def test_the_default_window_keeps_the_charts_off_its_edge_and_fits_the_training_tab(qtbot, window):
    w = window
    qtbot.waitExposed(w)
    assert (w.width(), w.height()) == (1360, 860)
    for chart in w.charts.charts.values():
        assert right_edge(chart, w) <= w.width() - 6, chart.title
    assert right_edge(w.log, w) <= w.width() - 6
    w.tabs.setCurrentWidget(w.training_panel)
    qtbot.waitUntil(lambda: w.training_panel.isVisible())
    assert not w.training_panel.horizontalScrollBar().isVisible()
    assert w.training_panel.widget().minimumSizeHint().width() <= w.training_panel.viewport().width()


def test_the_task_preview_table_has_room_for_rows(qtbot, window):
    w = window
    w.tabs.setCurrentWidget(w.tasks_panel)
    w.tasks_panel.add_task()
    editor = w.tasks_panel.editor
    assert editor.table.minimumHeight() >= 180
    assert not editor.horizontalScrollBar().isVisible()
