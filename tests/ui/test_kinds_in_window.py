"""The task editor offers the kinds of the registry and shows each kind's own fields and column names."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from qarac_gui.core import kinds
from qarac_gui.core.kinds.pooled import Regression


class Ordinal(Regression):
    name, title, help = "ordinal", "Ordinal score", "A grade per text, learnt as a number."
    text_role = "Essay column"


@pytest.fixture
def window(qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "app-data"))
    monkeypatch.setitem(kinds.HEAD_KINDS, "ordinal", Ordinal())
    from qarac_gui.ui.main_window import MainWindow
    w = MainWindow()
    w.show()
    yield w
    w.document.reset()
    w.close()


def _choose(combo, text):
    index = combo.findText(text)
    assert index >= 0, f"{text!r} not offered: {[combo.itemText(i) for i in range(combo.count())]}"
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_the_type_box_offers_every_kind_and_each_shows_its_own_fields(qtbot, window):
    w = window
    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    editor = w.tasks_panel.editor
    offered = [editor.kind.itemText(i) for i in range(editor.kind.count())]
    assert offered == [k.title for k in kinds.HEAD_KINDS.values()] and "Ordinal score" in offered

    _choose(editor.kind, "Ordinal score")
    assert w.document.project.tasks[0].head.kind == "ordinal"
    assert editor.kind_help.text() == Ordinal.help
    assert editor.columns_form.labelForField(editor.text_column).text() == "Essay column"
    assert editor.columns_form.labelForField(editor.label_column).text() == "Score column"
    assert not editor.threshold.isEnabled() and not editor.mlm_probability.isEnabled()

    _choose(editor.kind, kinds.HEAD_KINDS["multilabel"].title)
    assert editor.threshold.isEnabled() and not editor.mlm_probability.isEnabled()
    _choose(editor.kind, kinds.HEAD_KINDS["span_qa"].title)
    assert editor.columns_form.labelForField(editor.pair_column).text() == "Context column"
