"""What the window shows without being asked: each run button says what it does, and a task with errors is marked
in the task list, selected or not."""

from __future__ import annotations

from PySide6.QtWidgets import QPushButton

from qarac_gui.core.data.preview import TaskPreview
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.panels.run_panel import RunPanel
from qarac_gui.ui.panels.tasks_panel import TasksPanel


def test_every_run_button_says_what_it_does(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    buttons = panel.findChildren(QPushButton)
    assert {b.text() for b in buttons} >= {"Start", "Pause", "Resume", "Stop"}
    for button in buttons:
        assert button.toolTip(), button.text()
    assert "paused" in panel.resume_button.toolTip()


def red_pixels(image, rect):
    return sum(1 for x in range(rect.left(), rect.right()) for y in range(rect.top(), rect.bottom())
               if (c := image.pixelColor(x, y)).red() > 150 and c.green() < 110 and c.blue() < 110)


def test_a_selected_task_with_errors_stays_marked_under_the_highlight(qtbot):
    panel = TasksPanel(ProjectDocument())
    qtbot.addWidget(panel)
    panel.resize(800, 400)
    panel.show()
    for name in ("sentiment", "topics"):
        panel.add_task()
        panel.rename_task(name)
    panel.show_preview(TaskPreview("topics", errors=["task topics: the file is empty"]))
    rows = {panel.list.item(i).text(): panel.list.visualItemRect(panel.list.item(i)) for i in range(2)}
    panel.select("sentiment")
    image = panel.list.viewport().grab().toImage()
    assert red_pixels(image, rows["topics"]) > 10 and red_pixels(image, rows["sentiment"]) == 0
    panel.select("topics")
    assert panel.list.currentItem().isSelected()
    image = panel.list.viewport().grab().toImage()
    assert red_pixels(image, rows["topics"]) > 10           # under the selection's own colours
    assert "the file is empty" in panel.list.currentItem().toolTip()
