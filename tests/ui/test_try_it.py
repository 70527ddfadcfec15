"""Run > Try it…: the window's menu offers it once a run has a model; the dialog loads the model in the background,
takes typed text for a task's inputs and shows its prediction."""

from __future__ import annotations

import os
import threading

import pytest
from PySide6.QtWidgets import QLineEdit, QPlainTextEdit
from recipe_data import recipe_project, write_recipe_data
from tiny import write_task_data

from qarac_gui.core import paths
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.run import run
from qarac_gui.ui.dialogs.try_it import TryItDialog
from qarac_gui.ui.main_window import MainWindow

pytestmark = pytest.mark.usefixtures("torch_threads")

LONG = int(os.environ.get("QARAC_TEST_WAIT_MS", "120000"))


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    w.show()
    yield w
    w.document.reset()
    w.close()


def _train(tmp_path, tiny_bert):
    """The recipe's backbones and tasks plus a sentiment classifier on the answer encoder, a few steps, into the
    window's runs folder."""
    raw = recipe_project(tiny_bert, write_recipe_data(tmp_path / "data"), steps=4)
    raw["tasks"].append({"name": "sentiment", "backbone": "answer_encoder", "batch_size": 8, "max_length": 24,
                         "head": {"kind": "classification"},
                         "data": {"train": str(write_task_data(tmp_path / "data", "classification")),
                                  "validation_fraction": 0.25}})
    run_dir = paths.runs_dir() / "recipe-run"
    ended = run(parse_project(raw, tmp_path), lambda e: None, threading.Event(), run_dir=run_dir)
    assert ended.reason == "completed", ended.message
    return run_dir


def _loaded(dialog):
    return not dialog.jobs.busy and dialog.model is not None


@pytest.mark.slow
def test_try_it_loads_a_runs_model_and_shows_predictions_for_typed_text(qtbot, window, tiny_bert, tmp_path):
    w = window
    w.run_menu.aboutToShow.emit()
    assert not w.actions_by_name["try_it"].isEnabled()        # no run has a model yet
    run_dir = _train(tmp_path, tiny_bert)
    w.run_menu.aboutToShow.emit()
    assert w.actions_by_name["try_it"].isEnabled()

    w.actions_by_name["try_it"].trigger()
    dialog = w.findChild(TryItDialog)
    assert dialog.isVisible() and dialog.folder() == run_dir
    assert dialog.origin.text().startswith("Loading the model of recipe-run")     # in the background
    qtbot.waitUntil(lambda: _loaded(dialog), timeout=LONG)
    assert dialog.origin.text() == "recipe-run: the exported model (step 4)."
    assert [dialog.task_combo.itemData(i) for i in range(dialog.task_combo.count())] == [
        "encode_decode", "question_answering", "reasoning", "consistency", "sentiment"]

    # An ordinary task: one line of text, the label and every label's probability.
    dialog.task_combo.setCurrentIndex(dialog.task_combo.findData("sentiment"))
    assert list(dialog.fields) == ["text"] and isinstance(dialog.fields["text"], QLineEdit)
    qtbot.keyClicks(dialog.fields["text"], "the film was great")
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        dialog.try_button.click()
    assert dialog.result.text().split(" (")[0] in ("neg", "pos")
    assert dialog.table.rowCount() == 2 and dialog.table.horizontalHeaderItem(1).text() == "probability"
    assert sum(float(dialog.table.item(r, 1).text()) for r in range(2)) == pytest.approx(1.0, abs=1e-3)

    # A vector task: one premise, three hypotheses, one per line, ranked.
    dialog.task_combo.setCurrentIndex(dialog.task_combo.findData("consistency"))
    assert list(dialog.fields) == ["s1", "s2"] and isinstance(dialog.fields["s2"], QPlainTextEdit)
    assert "one per line" in dialog.hint.text()
    dialog.set_input("s1", "alice sleeps very fast")
    dialog.set_input("s2", "alice sleeps\nalice runs\nalice sleeps in paris")
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        dialog.try_button.click()
    assert dialog.table.rowCount() == 3
    assert sorted(dialog.table.item(r, 1).text() for r in range(3)) == ["alice runs", "alice sleeps",
                                                                         "alice sleeps in paris"]
    cosines = [float(dialog.table.item(r, 2).text()) for r in range(3)]
    assert cosines == sorted(cosines, reverse=True)
    assert dialog.result.text().startswith("most alike: ")

    # A decode task: the decoder's text for a typed sentence; a missing input is said in words.
    dialog.task_combo.setCurrentIndex(dialog.task_combo.findData("encode_decode"))
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        dialog.try_button.click()
    assert dialog.result.text() == "type something into 's' first"
    dialog.set_input("s", "alice sleeps")
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        dialog.try_button.click()
    assert dialog.result.text() and dialog.result.styleSheet() == ""
    if os.environ.get("QARAC_TRY_IT_SCREENSHOT"):
        dialog.task_combo.setCurrentIndex(dialog.task_combo.findData("consistency"))
        dialog.set_input("s1", "alice sleeps very fast")
        dialog.set_input("s2", "alice sleeps\nalice runs\nalice sleeps in paris")
        with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
            dialog.try_button.click()
        dialog.grab().save(os.environ["QARAC_TRY_IT_SCREENSHOT"])

    # Opened again, the same window comes back with its model still loaded.
    dialog.close()
    w.actions_by_name["try_it"].trigger()
    assert w.findChild(TryItDialog) is dialog and dialog.model is not None and not dialog.jobs.busy


def test_a_run_without_a_checkpoint_says_there_is_no_model_yet(qtbot, tmp_path):
    run_dir = tmp_path / "runs" / "just-started"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "project.toml").write_text("version = 2\n", encoding="utf-8")
    dialog = TryItDialog(tmp_path / "runs", run_dir)
    qtbot.addWidget(dialog)
    assert dialog.folder() == run_dir
    assert "just-started has no model yet" in dialog.origin.text()
    assert not dialog.try_button.isEnabled() and dialog.task_combo.count() == 0 and not dialog.jobs.busy


def test_a_folder_that_holds_no_model_is_refused_in_words(qtbot, tmp_path):
    dialog = TryItDialog(tmp_path / "runs", None)
    qtbot.addWidget(dialog)
    assert dialog.origin.text().startswith("No run has a model to try yet")
    (tmp_path / "elsewhere" / "export" / "full").mkdir(parents=True)
    (tmp_path / "elsewhere" / "export" / "full" / "manifest.json").write_text("{}", encoding="utf-8")
    (tmp_path / "elsewhere" / "export" / "full" / "heads.safetensors").write_bytes(b"")
    dialog.choose_folder(tmp_path / "elsewhere")
    qtbot.waitUntil(lambda: not dialog.jobs.busy, timeout=LONG)
    assert "Cannot load this model" in dialog.origin.text() and "unknown model format" in dialog.origin.text()
    assert not dialog.try_button.isEnabled()
