"""Training tab → Estimate memory and time: the memory the run needs on its device and the time of an epoch, in
words, from a measured pass of each task; what goes wrong is said in words too."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt

from tests.ui.test_progress_window import LONG, project_file

pytestmark = pytest.mark.usefixtures("torch_threads")


def _estimate(qtbot, panel):
    with qtbot.waitSignal(panel.jobs.finished, timeout=LONG):
        qtbot.mouseClick(panel.estimate_button, Qt.MouseButton.LeftButton)
    panel.jobs.wait()
    return panel.estimate_label.text()


def test_the_estimate_names_memory_by_part_and_the_time_of_an_epoch(qtbot, window, tiny_bert, tmp_path):
    w = window
    assert w.open_project(project_file(tmp_path, tiny_bert, 8, log_every=4))
    panel = w.training_panel
    text = _estimate(qtbot, panel)
    assert re.fullmatch(r"About [\d.]+ [kMG]?B of the cpu's [\d.]+ GB: weights [\d.]+ kB, gradients [\d.]+ kB, "
                        r"optimiser [\d.]+ kB, activations [\d.]+ [kM]B \(sentiment, 4 rows of \d+ tokens\)\. "
                        r"An epoch: (under a second|about \d+ s) \(11 steps of [\d.e-]+ s\)\.", text), text
    assert panel.estimate_button.isEnabled()


def test_a_project_that_cannot_be_built_says_why(qtbot, window, tiny_bert, tmp_path):
    w = window
    assert w.open_project(project_file(tmp_path, tiny_bert, 8, log_every=4))
    w.document.project.backbones["encoder"].model = str(tmp_path / "no-such-model")
    text = _estimate(qtbot, w.training_panel)
    assert text.startswith("Could not estimate: ") and "no-such-model" in text and "Traceback" not in text
