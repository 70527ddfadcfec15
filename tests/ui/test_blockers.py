"""What stands before Start, in the window's words: each problem named by the field's label on screen, listed once,
a link that takes the user to the field; advice on a plan too short to learn or a validation split too small to
measure; the number of steps Start would train; fields that do nothing now greyed out with the reason."""

from __future__ import annotations

import csv
import re

import pytest
from gui import LONG, settled
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QPushButton, QWidget

from qarac_gui.ui.field_words import FieldWords

pytestmark = pytest.mark.usefixtures("torch_threads")

REVIEWS = [("a wonderful, warm film", "pos"), ("dull and far too long", "neg"), ("I loved every minute", "pos"),
           ("a waste of an evening", "neg"), ("sharp, funny and kind", "pos"), ("the plot makes no sense", "neg")]


def reviews_csv(path, rows=60):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "label"])
        for i in range(rows):
            writer.writerow(REVIEWS[i % len(REVIEWS)])
    return path


def click_link(label, words):
    """A click on the link of a rich-text label whose text holds `words`, as its linkActivated reports it."""
    links = [href for href, text in re.findall(r'href="([^"]+)"[^>]*>([^<]+)</a>', label.text()) if words in text]
    assert len(links) == 1, label.text()
    label.linkActivated.emit(links[0])


def test_blockers_use_the_windows_labels_once_each_and_take_the_user_to_the_field(qtbot, window, tiny_bert):
    w = window
    panel = w.run_panel
    qtbot.waitUntil(lambda: "Tasks: add a task" in panel.problems.text(), timeout=LONG)
    assert "[[tasks]]" not in panel.problems.text()
    click_link(panel.problems, "Tasks: add a task")
    assert w.tabs.currentWidget() is w.tasks_panel and w.tasks_panel.buttons["add"].hasFocus()
    click_link(panel.problems, "Base model → Model: give a Hub id")
    assert w.tabs.currentWidget() is w.model_panel and w.model_panel.model_edit.hasFocus()

    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    name = w.document.project.tasks[0].name
    qtbot.waitUntil(lambda: f"Tasks → {name} → Training file: give either" in panel.problems.text(), timeout=LONG)
    assert f"tasks.{name}" not in panel.problems.text()
    w.tabs.setCurrentWidget(w.training_panel)
    click_link(panel.problems, "Training file")
    editor = w.tasks_panel.editor
    assert w.tabs.currentWidget() is w.tasks_panel
    assert editor.findChild(QWidget, "data_train").hasFocus()

    # the same problem twice is listed once
    words = FieldWords({"tasks": editor, "training": w.training_panel})
    twice = ["optim.lr: must be above 0", "optim.lr: must be above 0"]
    assert [b.text for b in words.blockers(twice, w.document.project)] == ["Training → Learning rate: must be above 0"]


def test_a_short_plan_and_a_tiny_validation_split_are_advised_against_and_the_steps_shown(qtbot, window, tiny_bert,
                                                                                         tmp_path, monkeypatch):
    w = window
    panel = w.run_panel
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    editor = w.tasks_panel.editor
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(reviews_csv(tmp_path / "r.csv")), ""))
    editor.findChild(QPushButton, "browse_train").click()
    w.document.set_value("tasks.0.data.text", "review")
    name = w.document.project.tasks[0].name
    qtbot.waitUntil(lambda: settled(w) and panel.start_button.isEnabled(), timeout=LONG)

    # a new project's defaults: 54 rows are 4 batches an epoch, and the floor of 200 steps makes the plan
    assert w.checks.planned_steps == 200
    assert panel.progress.maximum() == 200 and panel.progress.text() == "0 / 200 steps"
    assert "Epochs" not in panel.advice.text()
    # 6 held-out rows measure nothing: said in the window's words, with the share that fixes it
    advice = panel.advice.text()
    assert f"Tasks → {name}: 6 validation rows are too few to measure" in advice
    assert "raise “Held-out share” (to 0.34 for 20 rows)" in advice
    report = [editor.report.item(i).text() for i in range(editor.report.count())]     # the task's own report too
    assert "Warning: 6 validation rows are too few to measure (one row moves accuracy by 17%); raise “Held-out " \
           "share” (to 0.34 for 20 rows) or give a validation file" in report

    # without the floor, 3 epochs are 12 steps: too few, and the advice names the field that fixes it
    w.document.set_value("train.min_steps", 0)
    qtbot.waitUntil(lambda: "Training → Epochs: 3 epoch(s)" in panel.advice.text(), timeout=LONG)
    assert panel.progress.text() == "0 / 12 steps" and panel.start_button.isEnabled()     # advice, not a blocker
    click_link(panel.advice, "Training → Epochs")
    assert w.tabs.currentWidget() is w.training_panel
    assert w.training_panel.findChild(QWidget, "train_epochs").hasFocus()


def test_fields_that_do_nothing_now_are_greyed_out_with_the_reason(qtbot, window, tmp_path, monkeypatch):
    w = window
    training = w.training_panel
    epochs, temperature = (training.findChild(QWidget, n) for n in ("train_epochs", "train_temperature"))
    assert epochs.isEnabled() and not temperature.isEnabled()
    assert "Not used now: only temperature mixing uses it" in temperature.toolTip()
    w.document.set_value("train.max_steps", 100)
    assert not epochs.isEnabled() and "Steps is set" in epochs.toolTip()
    w.document.set_value("train.mixing", "temperature")
    assert temperature.isEnabled() and "Not used now" not in temperature.toolTip()

    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    editor = w.tasks_panel.editor
    share, labels = editor.findChild(QWidget, "data_validation_fraction"), editor.labels_edit
    assert share.isEnabled() and labels.isEnabled()
    w.document.set_value("tasks.0.data.validation", str(reviews_csv(tmp_path / "valid.csv")))
    assert not share.isEnabled() and "the validation file or split gives the validation rows" in share.toolTip()
    w.document.set_value("tasks.0.head.kind", "similarity")
    assert not labels.isEnabled() and "has no classes to name" in labels.toolTip()


def test_the_empty_task_editor_shows_no_made_up_values(qtbot, window):
    w = window
    editor = w.tasks_panel.editor
    w.tabs.setCurrentWidget(w.tasks_panel)
    assert editor.empty.isVisible() and not any(g.isVisible() for g in editor.groups)
    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    assert not editor.empty.isVisible() and all(g.isVisible() for g in editor.groups[:4])
    w.actions_by_name["undo"].trigger()
    assert editor.empty.isVisible() and not any(g.isVisible() for g in editor.groups)


def test_undo_names_the_field_as_the_window_labels_it(qtbot, window):
    w = window
    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    text = w.tasks_panel.editor.findChild(QWidget, "data_text")
    text.setEditText("review")
    text.lineEdit().editingFinished.emit()
    assert w.document.project.tasks[0].data.text == "review"
    assert w.actions_by_name["undo"].text().replace("&", "") == "Undo change of Text column"


def test_a_two_column_csv_is_mapped_as_text_and_label_once(qtbot, window, tiny_bert, tmp_path, monkeypatch):
    w = window
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    path = tmp_path / "mine.csv"
    path.write_text("stars,comment\n" + "".join(f"{'pos' if i % 2 else 'neg'},a {i} film\n" for i in range(40)),
                    encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    w.tasks_panel.editor.findChild(QPushButton, "browse_train").click()
    data = lambda: w.document.project.tasks[0].data       # noqa: E731
    qtbot.waitUntil(lambda: (data().text, data().label) == ("comment", "stars"), timeout=LONG)
    qtbot.waitUntil(lambda: settled(w) and w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert "column mapping" in w.document.undo_label()
    w.actions_by_name["undo"].trigger()                    # the user's undo of it stays undone
    assert (data().text, data().label) == ("text", "label")
    qtbot.waitUntil(lambda: any("no column 'text'" in b.text for b in w.run_panel.blockers), timeout=LONG)
    qtbot.waitUntil(lambda: settled(w), timeout=LONG)
    assert (data().text, data().label) == ("text", "label")


def test_an_untitled_project_is_named_after_its_data_when_its_first_run_starts(qtbot, window, tiny_bert, tmp_path,
                                                                                monkeypatch):
    w = window
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    w.document.set_value("train.max_steps", 2)
    qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(reviews_csv(tmp_path / "my reviews.csv")), ""))
    w.tasks_panel.editor.findChild(QPushButton, "browse_train").click()
    w.document.set_value("tasks.0.data.text", "review")
    qtbot.waitUntil(lambda: settled(w) and w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.document.project.name == "untitled"
    with qtbot.waitSignal(w.controller.finished, timeout=LONG):
        qtbot.mouseClick(w.run_panel.start_button, Qt.MouseButton.LeftButton)
    assert w.document.project.name == "my_reviews" and w.last_run_dir.name.startswith("my_reviews-")
    assert w.training_panel.name_edit.text() == "my_reviews"
    assert w.document.undo_label() == "change of Project name"


def test_the_training_tab_draws_what_the_mixing_gives_each_task_and_follows_the_settings(qtbot, window, tiny_bert,
                                                                                        tmp_path, monkeypatch):
    w = window
    w.document.set_value("backbones.encoder.model", str(tiny_bert))
    for name, rows in (("big", 120), ("small", 30)):
        qtbot.mouseClick(w.tasks_panel.buttons["add"], Qt.MouseButton.LeftButton)
        monkeypatch.setattr(QFileDialog, "getOpenFileName",
                            lambda *a, p=reviews_csv(tmp_path / f"{name}.csv", rows), **k: (str(p), ""))
        w.tasks_panel.editor.findChild(QPushButton, "browse_train").click()
        index = len(w.document.project.tasks) - 1
        w.document.set_value(f"tasks.{index}.data.text", "review")
        w.document.set_value(f"tasks.{index}.data.validation_fraction", 0.2)
        w.document.set_value(f"tasks.{index}.name", name)
    qtbot.waitUntil(lambda: settled(w) and w.run_panel.start_button.isEnabled(), timeout=LONG)
    chart, label = w.training_panel.mix_chart, w.training_panel.mix_label
    # all tasks every step: 200 steps of batches of 16 over 96 and 24 training rows
    qtbot.waitUntil(lambda: set(chart.passes) == {"big", "small"}, timeout=LONG)
    assert chart.passes["big"] == pytest.approx(200 / 6 * 1) and chart.passes["small"] == pytest.approx(200 / 2)
    assert "big: 50% of the batches" in label.text() and not chart.empty_label.isVisible()
    w.document.set_value("train.mixing", "proportional")          # drawn by size: the small task gets a fifth
    qtbot.waitUntil(lambda: "small: 20% of the batches" in label.text(), timeout=LONG)
    assert chart.passes["small"] == pytest.approx(200 * 0.2 / 2)
