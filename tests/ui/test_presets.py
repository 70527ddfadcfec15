"""File > New from preset: the bundled recipes load and validate, and choosing one in the real window gives a new,
unsaved project that Save writes elsewhere."""

from __future__ import annotations

import pytest
from gui import menu_action
from PySide6.QtWidgets import QFileDialog, QMessageBox

from qarac_gui.core import paths
from qarac_gui.core.project.config import dumps_project, load_project
from qarac_gui.ui.project_files import presets

PRESETS = presets()
LONG = 120000


def task_list(w) -> list[str]:
    items = w.tasks_panel.list
    return [items.item(i).text() for i in range(items.count())]


def test_the_index_lists_every_preset_file_and_each_loads_and_validates():
    folder = paths.resource_path("presets")
    assert len(PRESETS) >= 2
    assert sorted(p.path.name for p in PRESETS) == sorted(f.name for f in folder.glob("*.toml")
                                                         if f.name != "presets.toml")
    assert len({p.title for p in PRESETS}) == len(PRESETS)
    for preset in PRESETS:
        assert preset.path.is_file(), preset.path
        assert preset.title.strip() and preset.description.strip() and "\n" not in preset.description
        project = load_project(preset.path)          # strict: unknown keys, wrong types and invalid values raise
        assert project.tasks and project.backbones
        assert preset.path.read_text(encoding="utf-8").startswith("#"), "a preset starts with what it is"
        for task in project.tasks:     # Hub data, or files that come with the app beside the presets
            local = [task.data.train, task.data.validation, *(s.train for s in task.data.union)]
            assert all(project.resolve(f).is_file() for f in local if f), task.name
            assert task.data.hub or task.data.train or task.data.union, task.name
            if task.data.hub:
                assert task.data.validation_split, f"{task.name}: validate on the dataset's own split"
        assert project.train.max_steps >= 1000 and project.eval.every and project.optim.scheduler != "constant"


@pytest.mark.parametrize("preset", PRESETS, ids=[p.path.stem for p in PRESETS])
def test_choosing_a_preset_gives_a_new_unsaved_project_that_save_writes_elsewhere(qtbot, window, tmp_path,
                                                                                   monkeypatch, preset):
    w = window
    bundled = preset.path.read_bytes()
    expected = load_project(preset.path)
    assert [a.text() for a in menu_action(w, "File", "New from preset").menu().actions()] == [p.title
                                                                                            for p in PRESETS]
    action = menu_action(w, "File", "New from preset", preset.title)
    assert action.statusTip() == preset.description

    action.trigger()
    first = next(iter(expected.backbones.values())).model
    qtbot.waitUntil(lambda: w.model_panel.model_edit.text() == first, timeout=5000)
    assert task_list(w) == [t.name for t in expected.tasks]
    assert w.isWindowModified() and "(not saved)" in w.windowTitle()
    assert w.document.path is None and not w.actions_by_name["undo"].isEnabled()
    assert w.document.project.root.resolve() != preset.path.parent.resolve()

    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (asked.append(a[2]), (str(tmp_path / "mine"), ""))[1])
    menu_action(w, "File", "Save").trigger()
    assert len(asked) == 1, "Save of a new project asks where"
    saved = tmp_path / "mine.toml"
    assert saved.is_file() and w.document.path == saved.resolve()
    assert not w.isWindowModified() and "mine.toml" in w.windowTitle()
    assert dumps_project(load_project(saved)) == dumps_project(expected.with_absolute_paths())
    assert preset.path.read_bytes() == bundled


def test_a_preset_asks_before_unsaved_changes_are_lost_and_cancel_keeps_them(qtbot, window, monkeypatch):
    w = window
    preset = PRESETS[0]
    w.document.set_value("optim.lr", 3e-5)
    assert w.actions_by_name["undo"].isEnabled()
    asked = []

    def answer(button):
        return lambda *a, **k: (asked.append(a[1]), button)[1]
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel))
    menu_action(w, "File", "New from preset", preset.title).trigger()
    assert asked == ["Unsaved changes"]
    assert w.document.project.optim.lr == 3e-5 and w.document.project.tasks == [] and task_list(w) == []
    assert w.document.can_undo()

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Discard))
    menu_action(w, "File", "New from preset", preset.title).trigger()
    assert len(asked) == 2
    assert [t.name for t in w.document.project.tasks] == [t.name for t in load_project(preset.path).tasks]
    assert not w.actions_by_name["undo"].isEnabled()          # the preset is where undo starts
