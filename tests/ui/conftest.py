import pytest
from gui import LONG
from PySide6.QtWidgets import QMessageBox


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path, monkeypatch):
    """Each window test has app data of its own: no recent files, settings or runs of another test."""
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "app-data"))


@pytest.fixture
def no_dialogs(monkeypatch):
    """A message box that nobody expected fails the test instead of hanging it."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected dialog: {args[1:3]}")
    for name in ("question", "warning", "information", "critical"):
        monkeypatch.setattr(QMessageBox, name, refuse)


@pytest.fixture
def window(qtbot, no_dialogs):
    """The real window at its default size; afterwards any run is stopped and background reading waited for."""
    from qarac_gui.ui.main_window import MainWindow
    w = MainWindow()            # not qtbot.addWidget: its teardown would close before a run has stopped
    w.show()
    yield w
    if w.controller.running:
        w.controller.request_stop()
        qtbot.waitUntil(lambda: not w.controller.running, timeout=LONG)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=LONG)
    w.document.reset()              # nothing unsaved: closing must not ask
    w.close()


@pytest.fixture
def charts_panel(qtbot):
    """The run view's charts panel on its own, shown at a size the window gives it."""
    from qarac_gui.ui.panels.charts_panel import ChartsPanel
    p = ChartsPanel()
    qtbot.addWidget(p)
    p.resize(1100, 700)
    p.show()
    qtbot.waitExposed(p)
    return p
