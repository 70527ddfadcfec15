"""Several backbones in the window, driven as a user would: the Model tab's list (add, role, rename, remove), the
task editor's named inputs and head options, the drawing of the graph, and what blocks Start."""

from __future__ import annotations

import copy

import pytest
import tomli_w
from gui import choose, click, click_row, settled, type_into
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox, QPushButton
from recipe_data import recipe_project, write_recipe_data

pytestmark = pytest.mark.usefixtures("torch_threads")

LONG = 60_000
VECTOR, DECODE = "Vector comparison", "Decode (generate text)"


@pytest.fixture
def warnings(monkeypatch):
    """Warnings are recorded (a refusal is one); any other box fails the test instead of hanging it."""
    seen = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a, **k: seen.append(text))

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected dialog: {args[1:3]}")
    for name in ("question", "information", "critical"):
        monkeypatch.setattr(QMessageBox, name, refuse)
    return seen


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, warnings):
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "app-data"))
    from qarac_gui.ui.main_window import MainWindow
    w = MainWindow()
    w.resize(1360, 860)
    w.show()
    yield w
    w.document.reset()
    w.close()


def table_rows(table):
    return [tuple(table.item(r, c).text() for c in range(3)) for r in range(table.rowCount())]


def open_recipe(w, tmp_path, model):
    raw = recipe_project(model, write_recipe_data(tmp_path / "data"))
    path = tmp_path / "recipe.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    assert w.open_project(path, ask=False)
    return path


def test_add_a_decoder_rename_a_backbone_and_its_tasks_follow_undo_and_refused_removal(qtbot, window, warnings,
                                                                                      monkeypatch):
    w = window
    panel, backbones = w.model_panel, w.model_panel.backbones
    w.tabs.setCurrentWidget(panel)
    # one encoder: the list is one compact row, and role and pooling are not asked for
    assert table_rows(backbones.table) == [("encoder", "encoder", "mean")]
    assert backbones.table.isColumnHidden(1) and not panel.role.isVisible() and not panel.pooling.isVisible()
    assert panel.options.title() == "Shared encoder"

    click(qtbot, backbones.buttons["add"])
    assert list(w.document.project.backbones) == ["encoder", "backbone-2"]
    assert backbones.current() == panel.backbone == "backbone-2" and panel.source.title() == "Base model of backbone-2"
    assert panel.role.isVisible() and not backbones.table.isColumnHidden(1)
    choose(panel.role, "decoder: writes text (for decode heads)")
    assert w.document.project.backbones["backbone-2"].role == "decoder"
    assert table_rows(backbones.table)[1] == ("backbone-2", "decoder", "–")
    assert not panel.pooling.isVisible()              # a decoder makes no sentence vectors

    # two tasks: a classifier on the encoder, and a decode head over a named input, writing with the decoder
    w.tabs.setCurrentWidget(w.tasks_panel)
    click(qtbot, w.tasks_panel.buttons["add"])
    click(qtbot, w.tasks_panel.buttons["add"])
    editor = w.tasks_panel.editor
    choose(editor.kind, DECODE)
    assert not editor.text_column.isVisible() and editor.inputs.isVisible() and editor.condition.isVisible()
    assert [editor.decoder.itemText(i) for i in range(editor.decoder.count())] == ["backbone-2"]
    choose(editor.decoder, "backbone-2")
    click(qtbot, editor.inputs.add_button)
    type_into(qtbot, editor.condition, "x1")
    classifier, decode = w.document.project.tasks
    assert decode.inputs == {"x1": "encoder:text"} and decode.head.decoder == "backbone-2"
    assert set(panel.graph.edges()) == {("encoder", classifier.name), ("encoder", f"{decode.name}.x1"),
                                        (f"{decode.name}.x1", decode.name), (decode.name, "backbone-2")}

    # rename the encoder: the classifier's backbone and the decode task's input follow, in one undoable edit
    w.tabs.setCurrentWidget(panel)
    click_row(qtbot, backbones.table, 0)
    assert panel.backbone == "encoder"
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("reader", True))
    click(qtbot, backbones.buttons["rename"])
    project = w.document.project
    assert list(project.backbones) == ["reader", "backbone-2"]
    assert project.tasks[0].backbone == "reader" and project.tasks[1].inputs == {"x1": "reader:text"}
    assert ("reader", f"{decode.name}.x1") in panel.graph.edges() and panel.backbone == "reader"
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("writer", True))
    click_row(qtbot, backbones.table, 1)
    click(qtbot, backbones.buttons["rename"])
    assert w.document.project.tasks[1].head.decoder == "writer"

    w.actions_by_name["undo"].trigger()
    assert w.document.project.tasks[1].head.decoder == "backbone-2"
    w.actions_by_name["undo"].trigger()
    project = w.document.project
    assert list(project.backbones) == ["encoder", "backbone-2"]
    assert project.tasks[0].backbone == "encoder" and project.tasks[1].inputs == {"x1": "encoder:text"}
    assert [r[0] for r in table_rows(backbones.table)] == ["encoder", "backbone-2"]

    # a backbone that tasks read is not removed: the refusal names them
    click_row(qtbot, backbones.table, 0)
    click(qtbot, backbones.buttons["remove"])
    assert len(warnings) == 1 and classifier.name in warnings[0] and decode.name in warnings[0]
    assert list(w.document.project.backbones) == ["encoder", "backbone-2"]
    # nor is a name taken twice; an unused backbone goes
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Backbone-2", True))
    click(qtbot, backbones.buttons["rename"])
    assert "already" in warnings[1] and list(w.document.project.backbones) == ["encoder", "backbone-2"]
    click(qtbot, backbones.buttons["add"])
    click(qtbot, backbones.buttons["remove"])
    assert list(w.document.project.backbones) == ["encoder", "backbone-2"] and len(warnings) == 2


def test_the_recipe_shows_its_backbones_and_graph_and_start_waits_for_a_valid_graph(qtbot, window, tiny_bert,
                                                                                   tmp_path):
    w = window
    open_recipe(w, tmp_path, tiny_bert)
    panel = w.model_panel
    w.tabs.setCurrentWidget(panel)
    assert table_rows(panel.backbones.table) == [("question_encoder", "encoder", "attention"),
                                                 ("answer_encoder", "encoder", "attention"),
                                                 ("decoder", "decoder", "–")]
    assert panel.graph_box.isVisible() and panel.pooling_rank.isVisible()     # attention pooling has a width
    expected = {("answer_encoder", "encode_decode.s"), ("encode_decode.s", "encode_decode"),
                ("encode_decode", "decoder"),
                ("question_encoder", "question_answering.q"), ("answer_encoder", "question_answering.a"),
                ("question_answering.q", "question_answering"), ("question_answering.a", "question_answering"),
                ("answer_encoder", "reasoning.p1"), ("answer_encoder", "reasoning.p2"),
                ("reasoning.p1", "reasoning"), ("reasoning.p2", "reasoning"), ("reasoning", "decoder"),
                ("answer_encoder", "consistency.s1"), ("answer_encoder", "consistency.s2"),
                ("consistency.s1", "consistency"), ("consistency.s2", "consistency")}
    assert set(panel.graph.edges()) == expected
    qtbot.waitUntil(lambda: settled(w) and w.checks.info is not None, timeout=LONG)
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.checks.problems == []

    # the task editor on a decode task: its inputs, decoder and condition; no single text column
    w.tabs.setCurrentWidget(w.tasks_panel)
    w.tasks_panel.select("consistency")
    editor = w.tasks_panel.editor
    assert editor.kind.currentText() == VECTOR and editor.left.text() == "s1" and editor.right.text() == "s2"
    assert [(r.name.text(), r.backbone.currentText(), r.column.currentText()) for r in editor.inputs.rows] == [
        ("s1", "answer_encoder", "premise"), ("s2", "answer_encoder", "hypothesis")]
    type_into(qtbot, editor.right, "s2 + s3")
    problem = "tasks.consistency.head.right: no input named 's3' (inputs: s1, s2)"
    qtbot.waitUntil(lambda: problem in w.checks.problems, timeout=LONG)
    shown = "Tasks → consistency → Right: no input named 's3' (inputs: s1, s2)"       # the window's words
    assert shown in [b.text for b in w.run_panel.blockers] and not w.run_panel.start_button.isEnabled()
    assert ("answer_encoder", "consistency.s2") in w.model_panel.graph.edges()
    type_into(qtbot, editor.right, "s2")
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.run_panel.problems.text() == ""

    w.tasks_panel.select("reasoning")
    assert editor.kind.currentText() == DECODE and editor.decoder.currentText() == "decoder"
    assert editor.condition.text() == "p1 + p2" and not editor.left.isVisible()
    assert not editor.text_column.isVisible() and not editor.pair_column.isVisible()
    assert editor.label_column.isVisible() and editor.columns_form.labelForField(
        editor.label_column).text() == "Target text column"


def test_a_vector_task_with_two_named_inputs_made_in_the_task_editor(qtbot, window, tiny_bert, tmp_path,
                                                                     monkeypatch):
    w = window
    data = write_recipe_data(tmp_path / "data")
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    w.tabs.setCurrentWidget(w.tasks_panel)
    click(qtbot, w.tasks_panel.buttons["add"])
    editor = w.tasks_panel.editor
    choose(editor.kind, VECTOR)
    from PySide6.QtWidgets import QFileDialog
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(data["wiki_qa"]), ""))
    editor.findChild(QPushButton, "browse_train").click()
    name = w.document.project.tasks[0].name
    qtbot.waitUntil(lambda: name in w.checks.previews and "question" in editor.inputs.columns, timeout=LONG)
    # the head reads named inputs: the single text columns are gone, the inputs and the kind's options are there
    assert editor.inputs.isVisible() and not editor.text_column.isVisible() and not editor.pair_column.isVisible()
    assert editor.left.isVisible() and editor.compare.isVisible() and not editor.decoder.isVisible()
    assert not editor.pooling.isVisible() and not editor.threshold.isVisible()
    assert editor.inputs.empty.isVisible()
    qtbot.waitUntil(lambda: any("head reads named inputs" in p for p in w.checks.problems), timeout=LONG)

    for input_name, column in (("q", "question"), ("a", "answer")):
        click(qtbot, editor.inputs.add_button)
        row = editor.inputs.rows[-1]
        type_into(qtbot, row.name, input_name)
        choose(editor.inputs.rows[-1].column, column)
    assert [editor.inputs.rows[i].backbone.currentText() for i in range(2)] == ["encoder", "encoder"]
    type_into(qtbot, editor.left, "q")
    type_into(qtbot, editor.right, "a")
    choose(editor.compare, "distance to zero (the two should embed alike)")
    task = w.document.project.tasks[0]
    assert task.inputs == {"q": "encoder:question", "a": "encoder:answer"}
    assert (task.head.left, task.head.right, task.head.compare) == ("q", "a", "distance")
    assert not editor.columns_box.isVisible()          # compared by distance: no label column either
    assert set(w.model_panel.graph.edges()) == {("encoder", f"{name}.q"), ("encoder", f"{name}.a"),
                                                (f"{name}.q", name), (f"{name}.a", name)}

    # renaming an input renames it in the expressions, in the same edit
    type_into(qtbot, editor.inputs.rows[0].name, "question")
    task = w.document.project.tasks[0]
    assert list(task.inputs) == ["question", "a"] and task.head.left == "question"
    w.actions_by_name["undo"].trigger()
    assert list(w.document.project.tasks[0].inputs) == ["q", "a"] and w.document.project.tasks[0].head.left == "q"
    # a name used twice is marked, not saved
    type_into(qtbot, editor.inputs.rows[1].name, "q")
    assert list(w.document.project.tasks[0].inputs) == ["q", "a"] and "already" in editor.inputs.rows[1].name.toolTip()

    qtbot.waitUntil(lambda: settled(w) and w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.checks.problems == []
    click(qtbot, editor.inputs.rows[1].remove)
    assert list(w.document.project.tasks[0].inputs) == ["q"]
    qtbot.waitUntil(lambda: any("no input named 'a'" in p for p in w.checks.problems), timeout=LONG)
    assert "→ Right: no input named 'a'" in w.run_panel.start_button.toolTip()


def _wheel(widget, up=True):
    event = QWheelEvent(QPointF(5, 5), QPointF(widget.mapToGlobal(QPoint(5, 5))), QPoint(0, 0),
                        QPoint(0, 120 if up else -120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_mouse_wheel_changes_no_field_that_has_not_got_focus(qtbot, window):
    w = window
    click(qtbot, w.model_panel.backbones.buttons["add"])
    w.tabs.setCurrentWidget(w.tasks_panel)
    click(qtbot, w.tasks_panel.buttons["add"])
    editor = w.tasks_panel.editor
    choose(editor.kind, VECTOR)
    qtbot.waitUntil(lambda: editor.inputs.add_button.height() > 0)       # laid out, as a user sees it
    click(qtbot, editor.inputs.add_button)
    before = copy.deepcopy(w.document.project.tasks[0])
    for field in (editor.kind, editor.compare, editor.inputs.rows[0].backbone):
        _wheel(field, up=False)
    w.tabs.setCurrentWidget(w.model_panel)
    for field in (w.model_panel.role, w.model_panel.pooling):
        _wheel(field, up=False)
    assert w.document.project.tasks[0] == before
    assert w.document.project.backbones["backbone-2"].role == "encoder"
    w.activateWindow()
    w.model_panel.pooling.setFocus()
    qtbot.waitUntil(w.model_panel.pooling.hasFocus)
    _wheel(w.model_panel.pooling, up=False)           # once it has focus, the wheel is its own
    assert w.document.project.backbones["backbone-2"].pooling != "mean"


def test_every_drop_down_and_spin_box_of_the_window_and_its_dialogs_waits_for_focus(qtbot, window, tmp_path):
    """The wheel guard is a widget class: any plain QComboBox or spin box added later would change on a scroll."""
    from PySide6.QtWidgets import QAbstractSpinBox, QComboBox

    from qarac_gui.ui.dialogs.dataset_dialog import DatasetDialog
    from qarac_gui.ui.dialogs.export_dialog import ExportDialog
    from qarac_gui.ui.dialogs.history_dialog import HistoryDialog
    from qarac_gui.ui.dialogs.hub_dialog import HubDialog
    from qarac_gui.ui.dialogs.try_it import TryItDialog
    from qarac_gui.ui.form import ComboBox, DoubleSpinBox, SpinBox
    dialogs = [DatasetDialog(window), ExportDialog(tmp_path, None, window), HistoryDialog(tmp_path, window),
               HubDialog(window), TryItDialog(tmp_path, None, window)]
    found = []
    for top in [window, *dialogs]:
        found += top.findChildren(QComboBox) + top.findChildren(QAbstractSpinBox)
    assert len(found) > 20
    plain = [f"{type(w).__name__} {w.objectName()!r} in {type(w.window()).__name__}" for w in found
             if not isinstance(w, (ComboBox, SpinBox, DoubleSpinBox))]
    assert plain == []
    for dialog in dialogs:
        qtbot.waitUntil(lambda d=dialog: not getattr(getattr(d, "jobs", None), "busy", False), timeout=LONG)
        dialog.close()
