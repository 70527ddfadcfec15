"""Saving a project: data files and model folders inside the project's folder are written relative to the project
file, so the folder can move; a new project is named after its file, so its runs are too."""

from __future__ import annotations

import tomllib

from qarac_gui.core.project.config import TaskConfig, load_project
from qarac_gui.ui.document import ProjectDocument


def test_paths_inside_the_projects_folder_are_saved_relative_and_outside_absolute(tmp_path):
    folder, elsewhere = tmp_path / "project", tmp_path / "shared"
    (folder / "data").mkdir(parents=True)
    elsewhere.mkdir()
    inside, outside = folder / "data" / "train.csv", elsewhere / "valid.csv"
    for path in (inside, outside):
        path.write_text("text,label\na,b\n", encoding="utf-8")
    (folder / "model").mkdir()
    doc = ProjectDocument()
    doc.project.backbones["encoder"].model = str(folder / "model")
    task = TaskConfig(name="t")
    task.data.train, task.data.validation = str(inside), str(outside)
    doc.project.tasks.append(task)

    doc.save(folder / "reviews.toml")
    raw = tomllib.loads((folder / "reviews.toml").read_text(encoding="utf-8"))
    assert raw["tasks"][0]["data"]["train"] == "data/train.csv"
    assert raw["tasks"][0]["data"]["validation"] == str(outside)
    assert raw["backbones"]["encoder"]["model"] == "model"
    assert raw["name"] == "reviews" and doc.project.name == "reviews" and not doc.dirty

    moved = tmp_path / "moved"
    folder.rename(moved)                       # the folder moves, and its project still finds its files
    project = load_project(moved / "reviews.toml")
    assert project.resolve(project.tasks[0].data.train) == moved / "data" / "train.csv"
    assert project.resolve(project.tasks[0].data.validation) == outside


def test_a_named_project_keeps_its_name_when_saved(tmp_path):
    doc = ProjectDocument()
    doc.project.name = "sentiment-v2"
    doc.save(tmp_path / "other.toml")
    assert doc.project.name == "sentiment-v2"
