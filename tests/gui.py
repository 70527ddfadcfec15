"""What the window tests do as a user would: pick from a drop-down, type into a field, click through the menu bar,
and wait until the window has read everything in the background."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractSpinBox, QWidget

# generous for a loaded 2-core CI machine; a test that waits this long has failed anyway
LONG = int(os.environ.get("QARAC_TEST_WAIT_MS", "120000"))


def choose(combo, text):
    """Pick an entry the way a click in the drop-down does."""
    index = combo.findText(text)
    assert index >= 0, f"{text!r} not offered: {[combo.itemText(i) for i in range(combo.count())]}"
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def type_into(qtbot, edit, text):
    """Select what a line edit holds, type over it (or delete it), and leave the field."""
    edit.setFocus()
    edit.selectAll()
    if text:
        qtbot.keyClicks(edit, text)
    else:
        qtbot.keyClick(edit, Qt.Key.Key_Delete)
    edit.editingFinished.emit()


def field(parent, name):
    found = parent.findChild(QWidget, name)
    assert found is not None, name
    return found


def set_field(qtbot, parent, name, text):
    """Type into a form field by its name: a spin box commits on Enter, a line edit when it is left."""
    widget = field(parent, name)
    if isinstance(widget, QAbstractSpinBox):
        widget.setFocus()
        widget.selectAll()
        qtbot.keyClicks(widget, text)
        qtbot.keyClick(widget, Qt.Key.Key_Return)
    else:
        type_into(qtbot, widget, text)


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def click_row(qtbot, table, row):
    rect = table.visualRect(table.model().index(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def menu_action(w, *texts):
    """The action reached by clicking through the menu bar, e.g. File > New from preset > a preset."""
    actions = w.menuBar().actions()
    for depth, text in enumerate(texts):
        found = [a for a in actions if a.text().replace("&", "") == text]
        assert found, f"{text!r} is not in the menu: {[a.text() for a in actions]}"
        action = found[0]
        assert action.isEnabled() and action.isVisible(), f"{text!r} cannot be clicked"
        if depth < len(texts) - 1:
            assert action.menu() is not None, f"{text!r} is not a menu"
            actions = action.menu().actions()
    return action


def settled(w):
    """Nothing left to read: the model, and every task's data preview."""
    c = w.checks
    return not w.jobs.busy and not c.pending and all(t.name in c.previews for t in w.document.project.tasks)
