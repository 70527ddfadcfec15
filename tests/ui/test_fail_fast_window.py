"""What the window says at once instead of after a wait: the batch probe without a GPU, the dataset dialog without
the Hub; the probe's busy bar ends however the probe does; the dialogs' drop-downs ignore a passing mouse wheel."""

from __future__ import annotations

import threading

import pytest
from hub_server import StandInHub
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QComboBox, QMessageBox

from qarac_gui.core.errors import RunStopped, UserError
from qarac_gui.core.events import Progress
from qarac_gui.core.model import devices
from qarac_gui.core.model.devices import DeviceChoice
from qarac_gui.ui.dialogs.dataset_dialog import DatasetDialog
from qarac_gui.ui.dialogs.export_dialog import ExportDialog
from qarac_gui.ui.dialogs.hub_dialog import HubDialog
from qarac_gui.ui.main_window import MainWindow

LONG = 60_000
CPU_ONLY = [DeviceChoice("auto", "Automatic", True), DeviceChoice("cpu", "CPU", True),
            DeviceChoice("cuda", "CUDA GPU (none found)", False)]
ONE_GPU = [DeviceChoice("auto", "Automatic", True), DeviceChoice("cpu", "CPU", True),
           DeviceChoice("cuda", "CUDA GPU (Test GPU, 8 GiB)", True)]


def _window(qtbot):
    w = MainWindow()
    w.show()
    return w


def _close(qtbot, w):
    if w.controller.running:
        w.controller.request_stop()
        qtbot.waitUntil(lambda: not w.controller.running, timeout=LONG)
    w.document.reset()
    w.close()


@pytest.fixture
def window_with(qtbot, monkeypatch):
    """A window whose device list (its background job at start) reports the given devices."""
    opened = []

    def make(choices):
        monkeypatch.setattr(devices, "list_devices", lambda: list(choices))
        opened.append(_window(qtbot))
        return opened[-1]
    yield make
    for w in opened:
        _close(qtbot, w)


# ---------------------------------------------------------------------------------------------------------------
# The batch-size probe


def test_the_probe_entry_waits_for_the_device_list_then_says_it_needs_a_gpu(qtbot, window_with):
    w = window_with(CPU_ONLY)
    action = w.actions_by_name["find_batch"]
    assert not action.isEnabled() and action.statusTip() == "Checking for a GPU…"    # before the list came
    qtbot.waitUntil(lambda: w.runs.gpu is not None, timeout=LONG)
    assert w.runs.gpu is False and not action.isEnabled()
    for tip in (action.statusTip(), action.toolTip()):
        assert "needs a CUDA GPU" in tip and "none was found" in tip
    assert action.text().endswith("(needs a GPU)")          # what a disabled menu entry can show


def test_with_a_gpu_the_probe_entry_is_enabled_except_during_a_run(qtbot, window_with):
    w = window_with(ONE_GPU)
    action = w.actions_by_name["find_batch"]
    qtbot.waitUntil(action.isEnabled, timeout=LONG)
    assert "GPU" in action.statusTip() and "needs" not in action.statusTip()
    assert action.text() == "Find the largest &batch sizes"
    release = threading.Event()
    w.controller.start(lambda emit, stop: release.wait(LONG))
    assert not action.isEnabled() and "run is in progress" in action.statusTip()
    with qtbot.waitSignal(w.controller.finished, timeout=LONG):
        release.set()
    assert action.isEnabled()


def test_the_probe_entry_follows_this_computer(qtbot):
    """The real device list: enabled exactly when torch sees a CUDA GPU."""
    import torch
    w = _window(qtbot)
    try:
        qtbot.waitUntil(lambda: w.runs.gpu is not None, timeout=LONG)
        assert w.actions_by_name["find_batch"].isEnabled() == torch.cuda.is_available()
    finally:
        _close(qtbot, w)


@pytest.fixture
def ready_to_probe(window_with, monkeypatch, qtbot):
    """A window with a GPU reported and nothing blocking a run, whose probe is replaced by `fake`."""
    from qarac_gui.core import probe
    from qarac_gui.ui import project_checks
    monkeypatch.setattr(project_checks, "start_problems", lambda *a, **k: [])
    w = window_with(ONE_GPU)
    qtbot.waitUntil(w.actions_by_name["find_batch"].isEnabled, timeout=LONG)

    def use(fake):
        monkeypatch.setattr(probe, "probe_batches", fake)
        return w
    return use


def _found(project, emit, stop):
    from qarac_gui.core.probe import BatchFit
    emit(Progress("probe", "t: trying 8 rows of 12 tokens"))
    return [BatchFit("t", 8, 16, 12)]


def _failed(project, emit, stop):
    raise UserError("finding the largest batch needs a GPU: on the CPU running out of memory raises no error")


def _stopped_while_trying(project, emit, stop):
    emit(Progress("probe", "t: trying 8 rows of 12 tokens"))
    stop.wait(LONG)
    raise UserError("the batch probe was stopped before it finished")      # what the real probe raises then


def _stopped_while_loading(project, emit, stop):
    stop.wait(LONG)
    raise RunStopped()                                                      # what building the run raises then


@pytest.mark.parametrize("fake, status", [(_found, "Batch sizes measured"), (_failed, "Failed: finding the largest"),
                                          (_stopped_while_trying, "Stopped before the largest batch sizes"),
                                          (_stopped_while_loading, "Stopped before the largest batch sizes")])
def test_the_busy_bar_stops_however_the_probe_ends(qtbot, ready_to_probe, fake, status):
    w = ready_to_probe(fake)
    bar = w.run_panel.progress
    stops = fake in (_stopped_while_trying, _stopped_while_loading)
    with qtbot.waitSignal(w.controller.finished, timeout=LONG):
        w.actions_by_name["find_batch"].trigger()
        assert w.controller.running and bar.maximum() == 0            # the indeterminate (busy) bar runs
        if stops:
            qtbot.mouseClick(w.run_panel.stop_button, Qt.MouseButton.LeftButton)
            assert "Stopping the batch-size probe" in w.run_panel.status.text()
    assert not w.controller.running
    assert bar.maximum() > 0 and bar.text() == ""                    # stopped, and no made-up step count shown
    assert w.run_panel.status.text().startswith(status)
    shown = {box.objectName() for box in w.findChildren(QMessageBox) if box.isVisible()}
    assert shown == {"_found": {"batch_sizes_box"}, "_failed": {"error_dialog"}}.get(fake.__name__, set())
    assert w.actions_by_name["find_batch"].isEnabled()


# ---------------------------------------------------------------------------------------------------------------
# The dataset dialog without the Hub


def test_the_dataset_dialog_says_at_once_that_it_is_offline(qtbot):
    dialog = DatasetDialog()            # the tests run with HF_HUB_OFFLINE=1
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(dialog.offline_label.isVisible, timeout=LONG)
    text = dialog.offline_label.text()
    assert text.startswith("Offline (HF_HUB_OFFLINE is set)") and "datasets" in text and "local data file" in text
    assert "model" not in text
    assert not dialog.search_button.isEnabled() and not dialog.details_button.isEnabled()
    dialog.start_search()
    assert "Searching" not in dialog.status.text()


@pytest.fixture
def online(monkeypatch):
    from huggingface_hub import constants

    from qarac_gui.core.model import hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.forget_hub_failures()
    yield
    hub.forget_hub_failures()


def test_a_silent_hub_gets_one_bounded_try_and_a_message_about_datasets(qtbot, online, monkeypatch, capfd):
    from qarac_gui.core.data import hub as hub_data
    monkeypatch.setattr(hub_data, "REACH_TIMEOUT", 1.0)
    server = StandInHub()
    server.stall = 3600                 # accepts the connection, never answers
    server.start()
    try:
        dialog = DatasetDialog(endpoint=server.url)
        qtbot.addWidget(dialog)
        dialog.query.setText("reviews")
        with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "search"):
            dialog.search_button.click()
            assert dialog.status.text() == "Searching…"
        requests = list(server.requests)
    finally:
        server.stop()
    text = dialog.status.text()
    assert "did not answer" in text and "datasets" in text and "local data file" in text and "model" not in text
    assert requests == ["GET /api/models"]           # one small request, no retries
    captured = capfd.readouterr()
    assert "Retry" not in captured.out + captured.err


def test_no_network_switches_the_dataset_dialog_offline_in_words_about_datasets(qtbot, online):
    dialog = DatasetDialog(endpoint="http://127.0.0.1:9")          # nothing listens there
    qtbot.addWidget(dialog)
    dialog.query.setText("reviews")
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "search"):
        dialog.search_button.click()
    assert "cannot reach the Hub" in dialog.status.text() and "datasets" in dialog.status.text()
    label = dialog.offline_label.text()
    assert dialog.offline and label.startswith("No network") and "datasets" in label and "model" not in label
    assert not dialog.search_button.isEnabled()


# ---------------------------------------------------------------------------------------------------------------
# A passing mouse wheel


def _wheel(widget, down=True) -> None:
    event = QWheelEvent(QPointF(5, 5), QPointF(widget.mapToGlobal(QPoint(5, 5))), QPoint(0, 0),
                        QPoint(0, -120 if down else 120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def _filled(combo: QComboBox) -> QComboBox:
    combo.blockSignals(True)            # the items are there to scroll through, not to act on
    if combo.count() < 3:
        combo.addItems(["first", "second", "third"])
    combo.setCurrentIndex(0)
    combo.blockSignals(False)
    return combo


def test_a_plain_combo_box_would_take_the_wheel(qtbot):
    """The control: the event below does change an unguarded drop-down, so the checks after it mean something."""
    combo = _filled(QComboBox())
    qtbot.addWidget(combo)
    combo.show()
    _wheel(combo)
    assert combo.currentIndex() == 1


def test_the_dialogs_drop_downs_ignore_the_wheel_until_focused(qtbot, tmp_path):
    hub_dialog, dataset_dialog = HubDialog(), DatasetDialog()
    export_dialog = ExportDialog(tmp_path / "runs", None)
    combos = [hub_dialog.task, hub_dialog.sort, dataset_dialog.config_combo, dataset_dialog.train_combo,
              dataset_dialog.valid_combo, export_dialog.run_combo]
    for dialog in (hub_dialog, dataset_dialog, export_dialog):
        qtbot.addWidget(dialog)
        dialog.show()
    for combo in combos:
        _filled(combo)
        _wheel(combo)
        assert combo.currentIndex() == 0, combo
        assert combo.focusPolicy() == Qt.FocusPolicy.StrongFocus      # a scroll does not give it focus either
    combo = hub_dialog.sort
    hub_dialog.activateWindow()
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus)
    _wheel(combo)
    assert combo.currentIndex() == 1                # once focused, the wheel works as usual
