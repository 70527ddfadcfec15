"""The QARAC recipe as a user gets it: File > New from preset, the Hub models and datasets swapped for tiny local
stand-ins in the window's own fields, Start, and Try it on the trained models (reconstruct a sentence, rank answers
for a question, score two sentences)."""

from __future__ import annotations

import os

import pytest
from gui import click_row, menu_action, set_field, settled, type_into
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QPushButton, QWidget
from recipe_data import write_recipe_data

from qarac_gui.core.events import RunEnded
from qarac_gui.ui.dialogs.try_it import TryItDialog
from qarac_gui.ui.project_files import presets

pytestmark = pytest.mark.usefixtures("torch_threads")

LONG = int(os.environ.get("QARAC_TEST_WAIT_MS", "180000"))
QARAC = next(p for p in presets() if p.path.name == "qarac.toml")


def swap_union_sources(qtbot, monkeypatch, editor, hubs, stand_ins):
    """The reconstruction task's sources: each Hub dataset becomes a local file of the same columns."""
    for row, hub in zip(editor.adapters.source_rows, hubs):
        if hub:
            index = row.kind_box.findText("File")
            row.kind_box.setCurrentIndex(index)
            row.kind_box.activated.emit(index)
            monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, f=stand_ins[hub], **k: (str(f), ""))
            qtbot.mouseClick(row.browse, Qt.MouseButton.LeftButton)


@pytest.mark.slow
def test_the_qarac_preset_trained_in_the_window_and_tried(qtbot, window, tiny_bert, tmp_path, monkeypatch):
    w = window
    data = write_recipe_data(tmp_path / "data")
    stand_ins = {"microsoft/wiki_qa": data["wiki_qa"], "stanfordnlp/snli": data["snli"]}
    menu_action(w, "File", "New from preset", QARAC.title).trigger()
    assert [t.name for t in w.document.project.tasks] == ["encode_decode", "question_answering", "reasoning",
                                                          "consistency"]

    # Model tab: every backbone's base model becomes the tiny stand-in
    panel = w.model_panel
    w.tabs.setCurrentWidget(panel)
    for row in range(3):
        click_row(qtbot, panel.backbones.table, row)
        type_into(qtbot, panel.model_edit, str(tiny_bert))
    assert {b.model for b in w.document.project.backbones.values()} == {str(tiny_bert)}

    # Tasks tab: the Hub datasets become the stand-in files, validated on a held-out share, short rows
    w.tabs.setCurrentWidget(w.tasks_panel)
    editor = w.tasks_panel.editor
    for task in ("encode_decode", "question_answering", "reasoning", "consistency"):
        w.tasks_panel.select(task)
        project_task = w.document.project.task(task)
        if project_task.data.hub:
            monkeypatch.setattr(QFileDialog, "getOpenFileName",
                                lambda *a, f=stand_ins[project_task.data.hub], **k: (str(f), ""))
            editor.findChild(QPushButton, "browse_train").click()
            set_field(qtbot, editor, "data_validation_split", "")
            set_field(qtbot, editor, "data_validation_fraction", "0.2")
        if project_task.data.union:
            assert not editor.findChild(QWidget, "data_train").isEnabled()      # the sources replace its file
            swap_union_sources(qtbot, monkeypatch, editor, [s.hub for s in project_task.data.union], stand_ins)
        set_field(qtbot, editor, "batch_size", "8")
        set_field(qtbot, editor, "max_length", "24")
    project = w.document.project
    assert not any(t.data.hub or any(s.hub for s in t.data.union) for t in project.tasks)
    assert project.task("consistency").data.label_map == {"0": 1, "1": 0, "2": -1}      # the preset's own

    # Training tab: a few steps, no warm-up
    training = w.training_panel
    for name, value in (("train_max_steps", "6"), ("optim_warmup_steps", "0"), ("optim_lr", "0.001"),
                        ("eval_every", "0"), ("checkpoint_every", "0")):
        set_field(qtbot, training, name, value)
    assert (project.train.max_steps, project.optim.lr) == (6, 1e-3)

    qtbot.waitUntil(lambda: settled(w) and w.run_panel.start_button.isEnabled(), timeout=LONG)
    assert w.checks.problems == []
    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as blocker:
        qtbot.mouseClick(w.run_panel.start_button, Qt.MouseButton.LeftButton)
    ended = blocker.args[0]
    assert isinstance(ended, RunEnded) and ended.reason == "completed", ended.message
    for task in project.tasks:                     # a loss curve for every objective
        assert w.charts.loss_points(task.name) >= 1, task.name

    # Try it, on the run that just ended
    w.run_menu.aboutToShow.emit()
    w.actions_by_name["try_it"].trigger()
    dialog = w.findChild(TryItDialog)
    qtbot.waitUntil(lambda: not dialog.jobs.busy and dialog.model is not None, timeout=LONG)
    assert [dialog.task_combo.itemData(i) for i in range(dialog.task_combo.count())] == [
        t.name for t in project.tasks]

    def try_task(task, **typed):
        dialog.task_combo.setCurrentIndex(dialog.task_combo.findData(task))
        for name, text in typed.items():
            dialog.set_input(name, text)
        with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
            dialog.try_button.click()
        assert dialog.result.styleSheet() == "", dialog.result.text()

    try_task("encode_decode", s="alice sleeps")                # the sentence through encoder and decoder
    assert dialog.result.text().strip()
    try_task("question_answering", q="where is the tower of paris",
             a="the tower is in paris\nthe cat sleeps\nthe river is in rome")
    assert dialog.table.rowCount() == 3
    assert sorted(dialog.table.item(r, 1).text() for r in range(3)) == [
        "the cat sleeps", "the river is in rome", "the tower is in paris"]
    try_task("consistency", s1="bob runs very fast", s2="bob runs")
    assert dialog.result.text()
