"""The data adapters editor on its own, driven as a user would: the row filter, the label map and a union's sources,
each change one undoable edit, and the display following undo and redo."""

from __future__ import annotations

import pytest
from gui import click, type_into
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QScrollArea

from qarac_gui.core import paths
from qarac_gui.core.project.config import (
    BackboneConfig,
    Project,
    TaskConfig,
    dumps_project,
    load_project,
    save_project,
    validate,
)
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.form import INVALID_STYLE
from qarac_gui.ui.panels.data_adapters_editor import DataAdaptersEditor, parse_value, shown_value


def make_project(tmp_path) -> Project:
    (tmp_path / "pairs.csv").write_text("premise,hypothesis,label\nA cat.,An animal.,0\nA dog.,A cat.,2\n",
                                        encoding="utf-8")
    (tmp_path / "sentences.csv").write_text("text,label\nHello there.,1\nGood bye.,0\n", encoding="utf-8")
    project = Project(name="adapters", root=tmp_path)
    project.backbones["encoder"] = BackboneConfig(model="bert-base-uncased")
    project.train.epochs = 1.0
    first = TaskConfig(name="sentences")
    first.data.train = "sentences.csv"
    first.data.validation = "sentences.csv"
    first.data.filter = "label != -1"
    second = TaskConfig(name="other")
    second.data.hub = "stanfordnlp/snli"
    project.tasks = [first, second]
    assert validate(project) == []
    return project


@pytest.fixture
def editor(qtbot, tmp_path):
    document = ProjectDocument(make_project(tmp_path))
    widget = DataAdaptersEditor(document)
    qtbot.addWidget(widget)
    widget.resize(600, 700)
    widget.show()
    widget.activateWindow()
    qtbot.waitActive(widget)          # focus moves only inside the active window
    widget.set_task(0)
    return widget


def task(editor, index=0):
    return editor.document.project.tasks[index]


def test_a_typed_filter_is_written_and_undo_and_redo_show_it(qtbot, editor):
    doc = editor.document
    assert editor.filter_edit.text() == "label != -1"
    assert editor.filter_edit.placeholderText() == "e.g. label != -1"
    type_into(qtbot, editor.filter_edit, "label in [0, 1] and not `gold label` == 'x'")
    assert task(editor).data.filter == "label in [0, 1] and not `gold label` == 'x'"
    assert doc.undo_label() == "row filter of sentences"
    type_into(qtbot, editor.filter_edit, "")             # empty: every row
    assert task(editor).data.filter == ""
    doc.undo()
    assert editor.filter_edit.text() == "label in [0, 1] and not `gold label` == 'x'"
    doc.undo()
    assert editor.filter_edit.text() == "label != -1" and task(editor).data.filter == "label != -1"
    doc.redo()
    assert editor.filter_edit.text() == task(editor).data.filter == "label in [0, 1] and not `gold label` == 'x'"
    editor.set_task(1)
    assert editor.filter_edit.text() == ""


@pytest.mark.parametrize(("text", "words"), [
    ("__import__('os')", "expected a comparison"),
    ("label >", "expected a column, a number"),
    ("label == 1; rm", "unexpected ';'"),
])
def test_an_invalid_filter_is_refused_in_words_and_not_written(qtbot, editor, text, words):
    type_into(qtbot, editor.filter_edit, text)
    assert task(editor).data.filter == "label != -1"
    assert not editor.document.can_undo()
    assert editor.filter_edit.styleSheet() == INVALID_STYLE
    tip = editor.filter_edit.toolTip()
    assert words in tip and "Not saved" in tip, tip
    type_into(qtbot, editor.filter_edit, "label == 1")     # fixed: written, and the mark goes
    assert task(editor).data.filter == "label == 1" and editor.filter_edit.styleSheet() == ""


def test_parse_and_show_values_round_trip():
    for text, value in (("1", 1), ("-1", -1), ("0.5", 0.5), ("1e-05", 1e-05), ("neutral", "neutral"),
                        ('"1"', "1"), ("'two words'", "two words")):
        assert parse_value(text) == value and type(parse_value(text)) is type(value)
        assert parse_value(shown_value(value)) == value and type(parse_value(shown_value(value))) is type(value)
    assert shown_value("1") == '"1"' and shown_value(2.0) == "2.0"


def test_label_map_rows_round_trip_with_numbers_and_text(qtbot, editor, tmp_path):
    doc = editor.document
    assert not editor.label_rows and not editor.label_problem.isVisible()
    click(qtbot, editor.add_label_button)
    assert task(editor).data.label_map == {"0": 0} and doc.undo_label() == "relabel 0 of sentences"
    row = editor.label_rows[0]
    assert row.key.hasFocus()
    type_into(qtbot, row.key, "2")
    type_into(qtbot, row.value, "-1")
    click(qtbot, editor.add_label_button)
    type_into(qtbot, editor.label_rows[1].value, "0.5")
    click(qtbot, editor.add_label_button)
    type_into(qtbot, editor.label_rows[2].key, "maybe")
    type_into(qtbot, editor.label_rows[2].value, "neutral")
    label_map = task(editor).data.label_map
    assert label_map == {"2": -1, "0": 0.5, "maybe": "neutral"}
    assert [type(v) for v in label_map.values()] == [int, float, str]
    # numbers and text in one map: written (each edit is one cell), and the problem is said under the rows
    assert editor.label_problem.isVisible() and "mix numbers and text" in editor.label_problem.text()
    type_into(qtbot, editor.label_rows[2].value, '"1"')
    assert task(editor).data.label_map["maybe"] == "1"

    # refused: an empty cell text, one listed twice, an empty value
    type_into(qtbot, editor.label_rows[1].key, "2")
    assert editor.label_rows[1].key.styleSheet() == INVALID_STYLE
    assert "relabelled already" in editor.label_rows[1].key.toolTip()
    type_into(qtbot, editor.label_rows[0].value, "")
    assert editor.label_rows[0].value.styleSheet() == INVALID_STYLE and "give the value" in \
        editor.label_rows[0].value.toolTip().lower()
    assert task(editor).data.label_map == {"2": -1, "0": 0.5, "maybe": "1"}

    # the types survive the project file
    save_project(doc.project, tmp_path / "p.toml")
    loaded = load_project(tmp_path / "p.toml", check=False).tasks[0].data.label_map
    assert loaded == {"2": -1, "0": 0.5, "maybe": "1"} and [type(v) for v in loaded.values()] == [int, float, str]

    click(qtbot, editor.label_rows[0].remove)
    assert list(task(editor).data.label_map) == ["0", "maybe"] and len(editor.label_rows) == 2
    doc.undo()
    assert [(r.key.text(), r.value.text()) for r in editor.label_rows] == [("2", "-1"), ("0", "0.5"),
                                                                          ("maybe", '"1"')]
    assert all(r.key.styleSheet() == r.value.styleSheet() == "" for r in editor.label_rows)


def test_a_kind_without_labels_offers_no_new_relabel_row(qtbot, editor):
    editor.document.edit(lambda p: setattr(p.tasks[0].head, "kind", "masked_lm"))
    assert not editor.relabel.isVisible()
    editor.document.edit(lambda p: p.tasks[0].data.label_map.update({"0": 1}))
    assert editor.relabel.isVisible() and not editor.add_label_button.isEnabled()
    assert "no labels to map" in editor.label_problem.text()


def test_sources_added_from_the_task_and_a_browsed_file_validate(qtbot, editor, tmp_path, monkeypatch):
    doc = editor.document
    doc.edit(lambda p: setattr(p.tasks[0].head, "kind", "masked_lm"))      # a union's rows hold texts alone
    assert "None" in editor.union_note.text()
    click(qtbot, editor.add_source_button)
    d = task(editor).data
    # the first source takes over the task's file and its filter; what a union does not use is cleared
    assert [(s.train, s.columns, s.filter) for s in d.union] == [("sentences.csv", ["text"], "label != -1")]
    assert (d.train, d.hub, d.validation, d.filter) == ("", "", "", "")
    assert doc.undo_label() == "add source of sentences"
    assert "not used" in editor.union_note.text() and editor.filter_edit.text() == ""
    assert validate(doc.project) == []

    click(qtbot, editor.add_source_button)
    row = editor.source_rows[1]
    assert row.location.styleSheet() == INVALID_STYLE and row.columns.styleSheet() == INVALID_STYLE
    assert any("union[1]" in p for p in validate(doc.project))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tmp_path / "pairs.csv"), ""))
    click(qtbot, row.browse)
    assert doc.undo_label() == "file of source 2 of sentences"
    type_into(qtbot, row.columns, "premise, hypothesis, premise")
    type_into(qtbot, row.filter, "label >")           # refused, in words
    assert row.filter.styleSheet() == INVALID_STYLE and "expected" in row.filter.toolTip()
    type_into(qtbot, row.filter, "label == 0")
    source = task(editor).data.union[1]
    assert (source.train, source.hub, source.columns, source.filter) == (
        str(tmp_path / "pairs.csv"), "", ["premise", "hypothesis"], "label == 0")
    assert row.location.styleSheet() == row.columns.styleSheet() == row.filter.styleSheet() == ""
    assert validate(doc.project) == []

    # a Hub split: the kind decides the fields shown
    click(qtbot, editor.add_source_button)
    row = editor.source_rows[2]
    assert row.kind == "file" and row.format.isVisible() and not row.split.isVisible()
    row.kind_box.setCurrentIndex(1)
    row.kind_box.activated.emit(1)
    assert row.split.isVisible() and row.hub_config.isVisible() and not row.browse.isVisible()
    type_into(qtbot, row.location, "nyu-mll/glue")
    type_into(qtbot, row.hub_config, "mnli")
    type_into(qtbot, row.split, "validation_matched")
    type_into(qtbot, row.columns, "premise")
    source = task(editor).data.union[2]
    assert (source.hub, source.hub_config, source.split, source.columns, source.train) == (
        "nyu-mll/glue", "mnli", "validation_matched", ["premise"], "")
    assert validate(doc.project) == []


def test_sources_move_and_remove_and_the_display_follows_undo(qtbot, editor):
    doc = editor.document
    for _ in range(3):
        click(qtbot, editor.add_source_button)
    for row, name in zip(editor.source_rows[1:], ("b.csv", "c.csv")):
        type_into(qtbot, row.location, name)
    assert [s.train for s in task(editor).data.union] == ["sentences.csv", "b.csv", "c.csv"]
    assert not editor.source_rows[0].up.isEnabled() and not editor.source_rows[2].down.isEnabled()
    assert "There is no file at b.csv" in editor.source_rows[1].location.toolTip()

    click(qtbot, editor.source_rows[2].up)
    assert [s.train for s in task(editor).data.union] == ["sentences.csv", "c.csv", "b.csv"]
    assert doc.undo_label() == "move source 3 up of sentences"
    assert [r.location.text() for r in editor.source_rows] == ["sentences.csv", "c.csv", "b.csv"]
    click(qtbot, editor.source_rows[0].remove)
    assert [s.train for s in task(editor).data.union] == ["c.csv", "b.csv"]
    assert [r.number.text() for r in editor.source_rows] == ["1.", "2."]

    doc.undo()
    assert [r.location.text() for r in editor.source_rows] == ["sentences.csv", "c.csv", "b.csv"]
    doc.undo()
    assert [r.location.text() for r in editor.source_rows] == ["sentences.csv", "b.csv", "c.csv"]
    while doc.can_undo():
        doc.undo()
    assert not editor.source_rows and "None" in editor.union_note.text()
    assert task(editor).data.train == "sentences.csv" and editor.filter_edit.text() == "label != -1"


def _wheel(widget):
    event = QWheelEvent(QPointF(5, 5), QPointF(widget.mapToGlobal(QPoint(5, 5))), QPoint(0, 0), QPoint(0, -120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_changes_no_source_field_without_focus(qtbot, editor):
    click(qtbot, editor.add_source_button)
    click(qtbot, editor.add_source_button)
    row = editor.source_rows[1]
    before = dumps_project(editor.document.project)
    for combo in (row.kind_box, row.format):
        index = combo.currentIndex()
        _wheel(combo)
        assert combo.currentIndex() == index
    assert dumps_project(editor.document.project) == before


def test_the_qarac_union_fits_600_pixels_without_a_horizontal_scrollbar(qtbot):
    project = load_project(paths.resource_path("presets", "qarac.toml"))
    document = ProjectDocument(project)
    widget = DataAdaptersEditor(document)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    qtbot.addWidget(area)
    area.resize(600, 900)
    area.show()
    widget.set_task([t.name for t in project.tasks].index("encode_decode"))
    qtbot.waitExposed(area)
    assert [r.location.text() for r in widget.source_rows] == ["microsoft/wiki_qa", "stanfordnlp/snli",
                                                               "data/syllogisms.csv"]
    assert [r.kind for r in widget.source_rows] == ["hub", "hub", "file"]
    assert widget.source_rows[0].filter.text() == "label == 1"
    assert widget.source_rows[2].location.styleSheet() == ""          # the preset's file is there
    assert widget.minimumSizeHint().width() <= 600 - area.verticalScrollBar().sizeHint().width()
    assert not area.horizontalScrollBar().isVisible()
    widget.set_task([t.name for t in project.tasks].index("consistency"))
    assert [(r.key.text(), r.value.text()) for r in widget.label_rows] == [("0", "1"), ("1", "0"), ("2", "-1")]
    assert widget.filter_edit.text() == "label != -1" and not widget.source_rows
