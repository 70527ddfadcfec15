"""The run history as a user drives it: every folder runs went to, each run's size, deleting a run after a
confirmation (a cancel keeps it; a running run cannot be deleted)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from qarac_gui.core import paths
from qarac_gui.core.events import RunEnded, RunStarted, StepLogged, event_to_json
from qarac_gui.core.results import history
from qarac_gui.ui.dialogs.history_dialog import COLUMNS, HistoryDialog


@pytest.fixture(autouse=True)
def _own_app_data(tmp_path, monkeypatch):
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "app-data"))


def _run(folder: Path, name: str, size: int, started: float, ended: bool = True) -> Path:
    run_dir = folder / name
    (run_dir / "checkpoints" / "step-00000004").mkdir(parents=True)
    (run_dir / "project.toml").write_text('name = "demo"\n', encoding="utf-8")
    os.utime(run_dir / "project.toml", (started, started))
    events = [RunStarted(run_dir=str(run_dir), total_steps=4, start_step=0, tasks={"sentiment": {}}, lr_curve={},
                         device="cpu", precision="fp32", removed_heads={}, encoder_params=1, trainable_params=1),
              StepLogged(step=4, epoch=1.0, task_losses={"sentiment": 0.5}, lr=1e-3, head_lr=1e-3,
                         samples_per_s=10.0, elapsed_s=1.0)]
    if ended:
        events.append(RunEnded(4, "completed", "", str(run_dir)))
    (run_dir / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in events), encoding="utf-8")
    with open(run_dir / "checkpoints" / "step-00000004" / "model.safetensors", "wb") as f:
        f.truncate(size)                    # sparse: the size without writing it
    return run_dir


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    """Two runs in the app's runs folder, one written elsewhere by the command line, and a remembered folder that
    has since been deleted."""
    app = _run(paths.runs_dir(), "demo-20260101-100000", 1_234_000_000, 1_767_261_600)
    small = _run(paths.runs_dir(), "demo-20260102-100000", 56_700_000, 1_767_348_000)
    cli = _run(tmp_path / "cli-runs", "cli-run", 3_400_000, 1_767_434_400)
    history.remember_runs_folder(cli.parent)
    (tmp_path / "gone").mkdir()
    history.remember_runs_folder(tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    return {"app": app, "small": small, "cli": cli}


def _cells(dialog: HistoryDialog, column: str) -> list[str]:
    col = COLUMNS.index(column)
    return [dialog.table.item(row, col).text() for row in range(dialog.table.rowCount())]


def _select(dialog: HistoryDialog, name: str) -> None:
    dialog.table.selectRow(_cells(dialog, "Run").index(name))


def _answer(monkeypatch, button) -> list[str]:
    asked = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return button
    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def test_the_history_shows_every_folders_runs_with_their_sizes(qtbot, runs, tmp_path):
    dialog = HistoryDialog(paths.runs_dir())
    qtbot.addWidget(dialog)
    dialog.show()
    assert _cells(dialog, "Run") == ["cli-run", "demo-20260102-100000", "demo-20260101-100000"]   # newest first
    assert _cells(dialog, "Size")[2] == "1.2 GB" and _cells(dialog, "Size")[1] == "56.7 MB"
    assert _cells(dialog, "Size")[0] == "3.4 MB"
    assert "1 other folder" in dialog.where.text()
    assert "1.3 GB in all" in dialog.total.text() and dialog.total.text().startswith("3 runs")
    dialog.grab().save(str(tmp_path / "history.png"))
    if os.environ.get("QARAC_SCREENSHOTS"):
        dialog.grab().save(os.path.join(os.environ["QARAC_SCREENSHOTS"], "history.png"))


def test_delete_asks_and_a_cancel_keeps_the_run(qtbot, runs, monkeypatch):
    dialog = HistoryDialog(paths.runs_dir())
    qtbot.addWidget(dialog)
    _select(dialog, "cli-run")
    asked = _answer(monkeypatch, QMessageBox.StandardButton.Cancel)
    dialog.delete_button.click()
    assert len(asked) == 1 and "cli-run" in asked[0] and "3.4 MB" in asked[0] and str(runs["cli"]) in asked[0]
    assert runs["cli"].is_dir()
    assert "cli-run" in _cells(dialog, "Run")


def test_delete_confirmed_removes_the_row_and_the_folder(qtbot, runs, monkeypatch):
    dialog = HistoryDialog(paths.runs_dir())
    qtbot.addWidget(dialog)
    _select(dialog, "demo-20260101-100000")
    asked = _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(dialog.run_deleted) as deleted:
        dialog.delete_button.click()
    assert asked and "1.2 GB" in asked[0]
    assert deleted.args == [str(runs["app"])]
    assert not runs["app"].exists()
    assert _cells(dialog, "Run") == ["cli-run", "demo-20260102-100000"]
    assert runs["small"].is_dir() and runs["cli"].is_dir()
    assert dialog.total.text().startswith("2 runs")
    # a run of the other folder goes the same way
    _select(dialog, "cli-run")
    dialog.delete_button.click()
    assert not runs["cli"].exists() and _cells(dialog, "Run") == ["demo-20260102-100000"]


def test_a_running_run_cannot_be_deleted(qtbot, runs, monkeypatch):
    running = _run(paths.runs_dir(), "training-now", 1000, 1_767_520_800, ended=False)
    history.lock_run(running)
    try:
        dialog = HistoryDialog(paths.runs_dir())
        qtbot.addWidget(dialog)
        _select(dialog, "training-now")
        assert _cells(dialog, "Status")[0] == "running"
        assert not dialog.delete_button.isEnabled() and "stop it first" in dialog.delete_button.toolTip()
        asked = _answer(monkeypatch, QMessageBox.StandardButton.Yes)
        dialog.delete_selected()                 # even asked directly, it neither asks nor deletes
        assert asked == [] and running.is_dir()
        _select(dialog, "cli-run")
        assert dialog.delete_button.isEnabled()
    finally:
        history.unlock_run(running)


def test_a_failed_deletion_is_explained(qtbot, runs, monkeypatch):
    dialog = HistoryDialog(paths.runs_dir())
    qtbot.addWidget(dialog)
    _select(dialog, "cli-run")
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a, **k: warnings.append(text))
    history.lock_run(runs["cli"])               # another process began training it after the list was read
    try:
        dialog.delete_button.click()
    finally:
        history.unlock_run(runs["cli"])
    assert warnings and "stop the run first" in warnings[0]
    assert runs["cli"].is_dir() and "cli-run" in _cells(dialog, "Run")


def test_two_runs_selected_are_compared_side_by_side_with_the_differing_settings_marked(qtbot, tmp_path, tiny_bert):
    import threading

    from PySide6.QtCore import Qt
    from tiny import project_dict

    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    for name, lr, started in (("first", 1e-3, 1_767_261_600), ("second", 5e-4, 1_767_348_000)):
        project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
        project.optim.lr, project.train.max_steps = lr, 2
        assert run(project, lambda e: None, threading.Event(), run_dir=paths.runs_dir() / name).reason == "completed"
        os.utime(paths.runs_dir() / name / "project.toml", (started, started))
    dialog = HistoryDialog(paths.runs_dir())
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.compare_button.isEnabled()                   # one run selected: nothing to compare with
    second = _cells(dialog, "Run").index("first")
    rect = dialog.table.visualRect(dialog.table.model().index(second, 0))
    qtbot.mouseClick(dialog.table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     rect.center())
    assert len(dialog.selected_runs()) == 2 and dialog.compare_button.isEnabled()
    assert not dialog.delete_button.isEnabled() and not dialog.show_button.isEnabled()    # those take one run
    compare = dialog.compare_selected()
    qtbot.addWidget(compare)
    assert compare.comparison.runs[0].name == "first"            # the older run is A
    assert compare.shown_settings() == [("optim.lr", True)]
    assert compare.settings.item(0, 1).text() == "0.001" and compare.settings.item(0, 2).text() == "0.0005"
    assert compare.metrics.rowCount() >= 2 and compare.metrics.item(0, 3).text()      # B - A of each metric
    compare.show_all.setChecked(True)
    shown = compare.shown_settings()
    assert shown[0] == ("optim.lr", True) and len(shown) > 20 and not any(marked for _, marked in shown[1:])
