"""A frame of the live charts costs one paint per chart, and the charts take turns, so a busy run never holds the
window's event loop for all of them at once."""

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication

from qarac_gui.ui import charts
from tests.ui.test_charts import realistic_run

FRAMES = 5


class Paints(QObject):
    """Counts a widget's paint events."""

    def __init__(self, widget) -> None:
        super().__init__()
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def fed(panel, events: list) -> None:
    for event in events:
        panel.handle(event)


def idle(qtbot, panel) -> None:
    """Every turn of the charts taken, then every event they posted handled."""
    qtbot.waitUntil(lambda: not any(c.pending for c in panel.shown_charts().values()), timeout=5000)
    for _ in range(10):
        QApplication.processEvents()


def frames(qtbot, panel) -> list[int]:
    """The loss chart's paints in each of FRAMES frames of a run that logs 20 steps between frames."""
    events = [e for e in realistic_run(total=40 + 20 * FRAMES) if type(e).__name__ in ("RunStarted", "StepLogged")]
    fed(panel, events[:41])
    panel.flush_in_turns()
    idle(qtbot, panel)
    paints, counts = Paints(panel.loss.viewport()), []
    for start in range(41, len(events), 20):
        fed(panel, events[start:start + 20])
        before = paints.count
        panel.flush_in_turns()
        idle(qtbot, panel)
        counts.append(paints.count - before)
    return counts


def test_a_frame_paints_the_loss_chart_once(charts_panel, qtbot):
    assert frames(qtbot, charts_panel) == [1] * FRAMES


def test_without_settling_the_range_first_a_frame_paints_more_than_once(charts_panel, qtbot, monkeypatch):
    """What the test above guards against: pyqtgraph fitting the range at paint time, which asks for more paints."""
    monkeypatch.setattr(charts, "settle_range", lambda view: None)
    assert sum(frames(qtbot, charts_panel)) > FRAMES


def test_the_charts_take_turns(charts_panel, qtbot):
    panel = charts_panel
    events = realistic_run(total=60)
    fed(panel, events[:31])
    panel.flush()
    idle(qtbot, panel)
    fed(panel, events[31:50])
    waiting = [name for name, chart in panel.charts.items() if chart.pending]
    assert waiting == ["loss", "metrics", "lr", "throughput"]
    panel.flush_in_turns()
    # this turn drew the first; the others wait for turns of their own
    assert [name for name in waiting if panel.charts[name].pending] == waiting[1:]
    marker_x = panel.marker.getData()[0]
    qtbot.waitUntil(lambda: not any(panel.charts[name].pending for name in waiting), timeout=5000)
    # the lr marker moved with the lr chart's turn
    assert panel.marker.getData()[0] is not marker_x and panel.marker.getData()[0][0] == events[49].step


def test_a_round_still_going_is_not_started_again(charts_panel, qtbot):
    """The chart timer can fire while a round's turns are still to come: the round goes on, none is added."""
    panel = charts_panel
    fed(panel, realistic_run(total=60)[:31])
    panel.flush_in_turns()
    panel.flush_in_turns()
    assert panel.lr.pending and panel.throughput.pending      # the second call drew nothing more
    qtbot.waitUntil(lambda: not any(c.pending for c in panel.shown_charts().values()), timeout=5000)


def test_the_progress_bar_repaints_with_the_event_loop_not_at_once(qtbot):
    """QProgressBar.setValue repaints at once, and with it any chart waiting for its redraw, which then paints a
    second time on its own turn; the run panel's bar waits for the event loop instead."""
    from qarac_gui.ui.panels.run_panel import RunPanel
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    panel.start_run(100, 0)
    paints = Paints(panel.progress)
    for _ in range(10):
        QApplication.processEvents()
    before = paints.count
    panel.show_step(40, 0.4, 4.0, 40)
    assert paints.count == before and panel.progress.value() == 40
    qtbot.waitUntil(lambda: paints.count > before, timeout=5000)
    before = paints.count
    panel.start_run(200, 10)                # a new range too
    assert paints.count == before and panel.progress.value() == 10 and panel.progress.maximum() == 200
    qtbot.waitUntil(lambda: paints.count > before, timeout=5000)


def test_a_runs_start_makes_its_curves_in_the_charts_turns_a_few_at_a_time(charts_panel, qtbot):
    """A run's start adds a dozen curves with legend entries (about 1 ms each): made in the charts' turns, a few
    each, not all while its events are handled."""
    from qarac_gui.ui.panels.charts_panel import NEW_CURVES_A_TURN
    panel = charts_panel
    fed(panel, realistic_run(total=60)[:2])                 # the start and the first step
    loss_items = panel.loss.getPlotItem().listDataItems
    assert loss_items() == [] and panel.loss.pending and len(panel.loss.series) == 6    # 3 tasks, raw and smoothed
    panel.flush_in_turns()                                  # this turn: the loss chart's first curves
    assert 0 < len(loss_items()) <= NEW_CURVES_A_TURN and len(panel.loss.legend.items) == 0
    idle(qtbot, panel)
    assert len(loss_items()) == 6 and len(panel.loss.legend.items) == 3
    assert all(len(panel.loss.curves[name].getOriginalDataset()[0]) == 1 for name in panel.loss.series)
