"""The status bar says which device a run trains on, with which precision, and how much memory it holds."""

from __future__ import annotations

import re
import sys

import pytest
from PySide6.QtCore import Qt

from qarac_gui.core.model.devices import memory_use
from tests.ui.test_progress_window import LONG, project_file

pytestmark = pytest.mark.usefixtures("torch_threads")

SIZE = r"([\d.]+) (B|kB|MB|GB|TB)"
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def _bytes(number: str, unit: str) -> float:
    return float(number) * UNITS[unit]


def test_memory_of_the_cpu_is_the_process_resident_memory_and_nothing_without_torch(monkeypatch):
    import torch
    held = torch.ones(64 * 2**20 // 4)              # 64 MiB that the process now holds
    use = memory_use("cpu")
    assert use is not None and 64 * 2**20 < use.used <= use.peak < use.total
    del held
    assert memory_use("cuda") is None or torch.cuda.is_initialized()      # no GPU started: nothing to tell
    monkeypatch.setitem(sys.modules, "torch", None)                       # the window never imports torch for it
    assert memory_use("cpu") is None


def test_a_run_in_the_window_shows_its_device_precision_and_memory(qtbot, window, tiny_bert, tmp_path):
    w, panel = window, window.run_panel
    label = w.run_view.device_meter.label
    assert label.text() == ""
    results = []
    w.controller.finished.connect(results.append)
    assert w.open_project(project_file(tmp_path, tiny_bert, 8, log_every=4))
    qtbot.waitUntil(lambda: not w.jobs.busy and not w.checks.pending and panel.start_button.isEnabled(), timeout=LONG)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(results), timeout=LONG)
    assert results[0].reason == "completed"
    match = re.fullmatch(rf"cpu · fp32 · {SIZE} in use of {SIZE} \(peak {SIZE}\)", label.text())
    assert match, label.text()
    used, total, peak = (_bytes(*match.groups()[i:i + 2]) for i in (0, 2, 4))
    assert 0 < used <= peak < total
    assert not w.run_view.device_meter._timer.isActive()      # the run ended: the reading stays, polling stops
