"""A value a field refuses blocks Start: the project keeps its old value, which a run would use unseen, so the run
panel lists the refusal with the field's name and a link to it until the field holds an accepted value again."""

from __future__ import annotations

import pytest
from gui import LONG, menu_action, settled, type_into
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from tests.ui.test_blockers import click_link
from tests.ui.test_main_window import project_file

pytestmark = pytest.mark.usefixtures("torch_threads")

REFUSED = "Training → Learning rate: '0' is not a number from 1e-09 to 1"


def ready(qtbot, w, tiny_bert, tmp_path):
    """A project Start can train, with the Training tab showing."""
    assert w.open_project(project_file(tmp_path, tiny_bert, 2))
    qtbot.waitUntil(lambda: settled(w) and w.run_panel.start_button.isEnabled(), timeout=LONG)
    w.tabs.setCurrentWidget(w.training_panel)
    return w.training_panel.findChild(QWidget, "optim_lr")


def blocked(w):
    texts = [b.text for b in w.run_panel.blockers]
    return (REFUSED in texts and not w.run_panel.start_button.isEnabled()
            and not w.actions_by_name["start"].isEnabled())


def test_a_refused_number_blocks_start_links_to_its_field_and_goes_once_fixed(qtbot, window, tiny_bert, tmp_path):
    w = window
    lr = ready(qtbot, w, tiny_bert, tmp_path)
    kept = w.document.project.optim.lr
    type_into(qtbot, lr, "0")
    assert blocked(w)
    assert w.start_run() is False and not w.controller.running
    assert w.document.project.optim.lr == kept          # the project file never holds the refused value

    w.run_panel.start_button.setFocus()
    click_link(w.run_panel.problems, "Training → Learning rate")
    assert w.tabs.currentWidget() is w.training_panel and lr.hasFocus()

    type_into(qtbot, lr, "2e-5")
    assert w.document.project.optim.lr == 2e-5
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.run_panel.blockers == [] and w.actions_by_name["start"].isEnabled()


def test_undo_shows_the_kept_value_and_lifts_the_block(qtbot, window, tiny_bert, tmp_path):
    w = window
    lr = ready(qtbot, w, tiny_bert, tmp_path)
    type_into(qtbot, w.training_panel.findChild(QWidget, "optim_weight_decay"), "0.02")
    type_into(qtbot, lr, "abc")
    assert any(b.text.startswith("Training → Learning rate: 'abc' is not a number") for b in w.run_panel.blockers)
    menu_action(w, "Edit", "Undo change of Weight decay").trigger()
    assert lr.text() == f"{w.document.project.optim.lr:g}" and lr.styleSheet() == ""
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.run_panel.blockers == []


def test_ctrl_r_while_typing_a_refused_number_does_not_start(qtbot, window, tiny_bert, tmp_path):
    w = window
    lr = ready(qtbot, w, tiny_bert, tmp_path)
    lr.setFocus()
    lr.selectAll()
    qtbot.keyClicks(lr, "0")                # still in the field: nothing committed or refused yet
    assert w.actions_by_name["start"].isEnabled()
    qtbot.keyClick(w, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert not w.controller.running
    assert blocked(w) and lr.hasFocus()


def test_a_task_fields_refusal_names_the_task_and_leaves_with_the_task(qtbot, window, tiny_bert, tmp_path):
    w = window
    ready(qtbot, w, tiny_bert, tmp_path)
    w.tabs.setCurrentWidget(w.tasks_panel)
    weight = w.tasks_panel.editor.findChild(QWidget, "weight")
    type_into(qtbot, weight, "-1")
    blocker = next(b for b in w.run_panel.blockers if "'-1' is not a number" in b.text)
    assert blocker.text.startswith("Tasks → sentiment → ") and blocker.place.field == "weight"
    assert not w.run_panel.start_button.isEnabled()
    w.tasks_panel.buttons["remove"].click()
    qtbot.waitUntil(lambda: w.run_panel.blockers and not any("'-1'" in b.text for b in w.run_panel.blockers),
                    timeout=LONG)


def test_a_click_on_start_while_typing_a_refused_number_does_not_start(qtbot, window, tiny_bert, tmp_path):
    w = window
    lr = ready(qtbot, w, tiny_bert, tmp_path)
    lr.setFocus()
    lr.selectAll()
    qtbot.keyClicks(lr, "0")
    qtbot.mouseClick(w.run_panel.start_button, Qt.MouseButton.LeftButton)     # leaving the field refuses the 0
    assert not w.controller.running
    assert blocked(w)


def test_the_fields_own_undo_back_to_the_kept_value_lifts_the_block_at_once(qtbot, window, tiny_bert, tmp_path):
    w = window
    lr = ready(qtbot, w, tiny_bert, tmp_path)
    kept = lr.text()
    type_into(qtbot, lr, "0")
    assert blocked(w) and lr.hasFocus()
    qtbot.keyClick(lr, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)      # the line edit's undo, still in it
    assert lr.text() == kept and lr.styleSheet() == ""
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.run_panel.blockers == []


def test_a_refused_row_filter_blocks_start_until_it_is_fixed_or_cleared(qtbot, window, tiny_bert, tmp_path):
    """A filter the grammar refuses leaves the project with its old filter (every row kept), which a run would use
    unseen: like a refused number it blocks Start, named and linked."""
    w = window
    ready(qtbot, w, tiny_bert, tmp_path)
    w.tabs.setCurrentWidget(w.tasks_panel)
    task = w.document.project.tasks[0].name
    edit = w.tasks_panel.findChild(QWidget, "data_filter")
    type_into(qtbot, edit, "label ==")
    texts = [b.text for b in w.run_panel.blockers]
    assert any(t.startswith(f"Tasks → {task} → Keep rows where: filter 'label ==': expected") and
               t.endswith("the project keeps its last filter until the field holds one that parses, or is cleared")
               for t in texts), texts
    assert not w.run_panel.start_button.isEnabled() and w.start_run() is False
    assert w.document.project.tasks[0].data.filter == ""
    type_into(qtbot, edit, "")
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.run_panel.blockers == []


def test_a_refused_input_name_blocks_start_until_the_row_shows_a_kept_name(qtbot, window, tiny_bert, tmp_path):
    w = window
    ready(qtbot, w, tiny_bert, tmp_path)
    w.tabs.setCurrentWidget(w.tasks_panel)
    editor = w.tasks_panel.findChild(QWidget, "inputs_editor")
    editor.add_input()
    qtbot.waitUntil(lambda: len(editor.rows) == 1, timeout=LONG)
    name = editor.rows[0].name
    type_into(qtbot, name, "1x")
    texts = [b.text for b in w.run_panel.blockers]
    assert any("'1x': an input's name uses letters" in t and "keeps its name 'x1'" in t for t in texts), texts
    assert not w.run_panel.start_button.isEnabled()
    type_into(qtbot, name, "words")
    assert list(w.document.project.tasks[0].inputs) == ["words"]
    qtbot.waitUntil(lambda: not any("'1x'" in b.text for b in w.run_panel.blockers), timeout=LONG)
    assert "tasks.0.inputs" not in w.document.refused


def test_a_unions_sources_are_named_by_number_and_a_refused_source_filter_blocks_start(qtbot, window, tiny_bert,
                                                                                       tmp_path):
    """A union's problems name the source by its number and the field in its row, and link to that row's field;
    a source filter the grammar refuses blocks Start like the task's own filter."""
    w = window
    ready(qtbot, w, tiny_bert, tmp_path)
    w.tabs.setCurrentWidget(w.tasks_panel)
    task = w.document.project.tasks[0].name
    editor = w.tasks_panel.findChild(QWidget, "data_adapters_editor")
    editor.add_source()                 # the task's file becomes source 1
    qtbot.waitUntil(lambda: not w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert (f"Tasks → {task}: a union makes one column of texts, 'review', and a classification task also reads "
            "'sentiment'; use a union for a task that reads texts alone, such as Masked language modelling (the "
            "head's Type), or give the task one training file or Hub dataset") in [b.text for b in w.run_panel.blockers]
    w.document.edit(lambda p: setattr(p.tasks[0].head, "kind", "masked_lm"))
    editor.add_source()                 # source 2: neither a file nor its columns yet
    qtbot.waitUntil(lambda: any("Source 2" in b.text for b in w.run_panel.blockers), timeout=LONG)
    texts = [b.text for b in w.run_panel.blockers]
    assert f"Tasks → {task} → Source 2: choose a local file (Browse…) or a Hub dataset, and give its path or id" \
        in texts, texts
    assert f"Tasks → {task} → Source 2 → Columns: name the text columns to take, e.g. premise, hypothesis" \
        in texts, texts
    w.tabs.setCurrentWidget(w.training_panel)
    click_link(w.run_panel.problems, "Source 2 → Columns")
    row = editor.source_rows[1]
    assert w.tabs.currentWidget() is w.tasks_panel and row.columns.hasFocus()
    editor._on_source_removed(row)
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)

    row = editor.source_rows[0]
    type_into(qtbot, row.filter, "label >")
    texts = [b.text for b in w.run_panel.blockers]
    assert any(t.startswith(f"Tasks → {task} → Source 1 → Keep rows where: filter 'label >': expected")
               for t in texts), texts
    assert not w.run_panel.start_button.isEnabled() and w.start_run() is False
    assert w.document.project.tasks[0].data.union[0].filter == ""
    click_link(w.run_panel.problems, "Source 1 → Keep rows where")
    assert row.filter.hasFocus()
    type_into(qtbot, row.filter, "label == 1")
    qtbot.waitUntil(lambda: w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.document.project.tasks[0].data.union[0].filter == "label == 1" and w.document.refused == {}
