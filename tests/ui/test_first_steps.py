"""A first project as a newcomer builds it: what the window says when a typed value is refused, when a task's data
cannot be read or is missing, and how it names a task whose head type changed."""

from __future__ import annotations

import pytest
from gui import LONG, choose, type_into
from PySide6.QtWidgets import QToolTip, QWidget

pytestmark = pytest.mark.usefixtures("torch_threads")


def test_a_refused_number_says_at_the_field_why_and_which_value_the_project_keeps(qtbot, window):
    w = window
    w.tabs.setCurrentWidget(w.training_panel)
    lr = w.training_panel.findChild(QWidget, "optim_lr")
    kept = w.document.project.optim.lr
    type_into(qtbot, lr, "0")
    assert w.document.project.optim.lr == kept
    assert QToolTip.isVisible()
    shown = QToolTip.text()
    assert "'0' is not a number from 1e-09 to 1" in shown and f"keeps {kept:g}" in shown
    assert shown in lr.toolTip()                 # still there when the user hovers later

    type_into(qtbot, lr, "")
    assert "The field is empty" in QToolTip.text()
    type_into(qtbot, lr, "3e-5")
    assert w.document.project.optim.lr == 3e-5 and "keeps" not in lr.toolTip()


def test_no_blank_line_stands_for_problems_there_are_none_of(qtbot):
    from qarac_gui.ui.panels.run_panel import RunPanel
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 200)
    panel.show()
    panel.set_state(running=False, paused=False, problems=["the data of sentiment cannot be read"])
    panel.set_advice(["a plan too short"])
    assert panel.problems.isVisible() and panel.advice.isVisible()
    panel.set_state(running=False, paused=False, problems=[])
    qtbot.waitUntil(lambda: panel.advice.y() < panel.status.geometry().bottom() + 2 * panel.layout().spacing() + 2)
    assert not panel.problems.isVisible() and panel.advice.isVisible()
    panel.set_advice([])
    assert not panel.advice.isVisible()
    panel.set_advice(["a plan too short"])
    panel.set_state(running=True, paused=False, problems=[])
    assert not panel.advice.isVisible()


def blocker_of(w, task):
    return next((b for b in w.run_panel.blockers if b.place.task == task), None)


def test_a_task_without_data_is_told_which_buttons_give_it_some(qtbot, window):
    w = window
    name = w.tasks_panel.add_task()
    qtbot.waitUntil(lambda: blocker_of(w, name) is not None, timeout=LONG)
    text = blocker_of(w, name).text
    assert text.startswith(f"Tasks → {name} → Training file: give either a training file (Browse…")
    assert "Hub dataset (Hub…)" in text and "train (a local file)" not in text


def test_a_file_that_cannot_be_read_is_named_with_its_task_and_what_to_do(qtbot, window, tiny_bert, tmp_path):
    w = window
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    good = tmp_path / "good.csv"
    good.write_text("text,label\n" + "".join(f"film {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40)))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    first = w.tasks_panel.add_task()
    w.tasks_panel.editor.set_data_file(str(good))
    second = w.tasks_panel.add_task()
    w.tasks_panel.editor.set_data_file(str(empty))
    qtbot.waitUntil(lambda: blocker_of(w, second) is not None and "empty" in blocker_of(w, second).text,
                    timeout=LONG)
    blocker = blocker_of(w, second)
    assert blocker.text == (f"Tasks → {second}: {empty}: the file is empty; choose a file with a header row and "
                            "data rows under it")
    w.tabs.setCurrentWidget(w.training_panel)
    w.tasks_panel.select(first)
    w.go_to(blocker.place)                      # as a click on its link does
    assert w.tabs.currentWidget() is w.tasks_panel
    assert w.document.project.tasks[w.tasks_panel.current_index()].name == second
    editor = w.tasks_panel.editor
    qtbot.waitUntil(lambda: editor.report.count() > 0 and "empty" in editor.report.item(0).text(), timeout=LONG)
    assert editor.report.item(0).text() == f"Error: {empty}: the file is empty; choose a file with a header row " \
                                           "and data rows under it"


def test_a_missing_column_points_to_the_column_boxes(qtbot, window, tiny_bert, tmp_path):
    w = window
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars,sentiment\n" + "".join(f"film {i},{i % 5},{'pos' if i % 2 else 'neg'}\n"
                                                         for i in range(40)))
    name = w.tasks_panel.add_task()
    w.tasks_panel.editor.set_data_file(str(path))
    qtbot.waitUntil(lambda: blocker_of(w, name) is not None and "no column" in blocker_of(w, name).text,
                    timeout=LONG)
    assert blocker_of(w, name).text.endswith("(columns: review, stars, sentiment); choose the file's columns under "
                                             "Columns")
    assert w.tasks_panel.editor.columns_box.title() == "Columns"


def test_a_task_named_by_add_follows_its_head_type_in_one_undoable_edit(qtbot, window):
    w = window
    panel, editor = w.tasks_panel, w.tasks_panel.editor
    panel.add_task()
    panel.add_task()
    w.document.set_value("train.epoch_task", "classification-2")
    choose(editor.kind, "Regression")
    assert [t.name for t in w.document.project.tasks] == ["classification", "regression"]
    assert w.document.project.tasks[1].head.kind == "regression"
    assert w.document.project.train.epoch_task == "regression"
    assert panel.list.currentItem().text() == "regression"
    assert w.actions_by_name["undo"].text().replace("&", "") == "Undo change of Type"
    w.actions_by_name["undo"].trigger()
    assert [(t.name, t.head.kind) for t in w.document.project.tasks] == [("classification", "classification"),
                                                                        ("classification-2", "classification")]
    assert w.document.project.train.epoch_task == "classification-2"

    # a name the user gave is theirs: only the type changes
    panel.list.setCurrentRow(0)
    panel.rename_task("sentiment")
    choose(editor.kind, "Regression")
    assert (w.document.project.tasks[0].name, w.document.project.tasks[0].head.kind) == ("sentiment", "regression")
    # the name a type change gave follows the next change too, and a taken name gets a number
    panel.list.setCurrentRow(1)
    choose(editor.kind, "Regression")
    panel.add_task()
    choose(editor.kind, "Regression")
    panel.list.setCurrentRow(1)
    choose(editor.kind, "Multi-label classification")
    assert [t.name for t in w.document.project.tasks] == ["sentiment", "multilabel", "regression-2"]


def test_the_plan_says_when_minimum_steps_makes_it_longer_than_its_epochs(qtbot, window, tiny_bert, tmp_path):
    w = window
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"film {i},{'pos' if i % 2 else 'neg'}\n" for i in range(60)))
    w.tasks_panel.add_task()
    w.tasks_panel.editor.set_data_file(str(path))
    label = w.training_panel.plan_label
    qtbot.waitUntil(lambda: label.text().startswith("200 optimiser steps"), timeout=LONG)
    assert "(3 epochs of classification: 4 batches each, 12 steps; raised to “Minimum steps”)" in label.text()
    w.document.set_value("train.min_steps", 0)
    qtbot.waitUntil(lambda: label.text().startswith("12 optimiser steps"), timeout=LONG)
    assert "(3 epochs of classification: 4 batches each)" in label.text()


def test_the_first_screen_says_how_to_choose_a_model_in_words_that_fit(qtbot, window):
    w = window
    panel = w.model_panel
    assert w.tabs.currentWidget() is panel
    edit = panel.model_edit
    qtbot.waitUntil(lambda: edit.width() > 0)
    room = edit.contentsRect().width() - 8                  # the line edit's own text margins
    assert edit.fontMetrics().horizontalAdvance(edit.placeholderText()) <= room, edit.placeholderText()
    status = panel.findChild(QWidget, "model_status").text()
    assert "press Load" in status and "Hub…" in status and "Folder…" in status
    qtbot.waitUntil(lambda: any(b.place.tab == "model" for b in w.run_panel.blockers), timeout=LONG)
    [blocker] = [b for b in w.run_panel.blockers if b.place.tab == "model"]
    assert blocker.text == ("Base model → Model: give a Hub id such as roberta-base and press Load, or a model folder "
                            "(Folder…), or find one with Hub…")


def test_a_label_column_with_one_class_says_how_to_get_two(qtbot, window, tiny_bert, tmp_path):
    w = window
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    path = tmp_path / "one.csv"
    path.write_text("text,label\n" + "".join(f"film {i},pos\n" for i in range(30)))
    name = w.tasks_panel.add_task()
    w.tasks_panel.editor.set_data_file(str(path))
    qtbot.waitUntil(lambda: blocker_of(w, name) is not None and "label(s)" in blocker_of(w, name).text, timeout=LONG)
    assert blocker_of(w, name).text.endswith("a classifier needs at least two; choose the column that holds the "
                                             "classes under Columns, or add rows of another class")


def test_a_model_that_cannot_be_read_is_listed_at_its_field_with_a_link_to_it(qtbot, window):
    w = window
    type_into(qtbot, w.model_panel.model_edit, "nosuchorg/nosuchmodel")
    qtbot.waitUntil(lambda: any(b.place.tab == "model" and "nosuchmodel" in b.text for b in w.run_panel.blockers),
                    timeout=LONG)
    [blocker] = [b for b in w.run_panel.blockers if "nosuchmodel" in b.text]
    assert blocker.text.startswith("Base model → Model: ")
    w.tabs.setCurrentWidget(w.tasks_panel)
    w.go_to(blocker.place)                      # as a click on its link does
    assert w.tabs.currentWidget() is w.model_panel and w.model_panel.model_edit.hasFocus()
