"""The open project: one Project object, its file, unsaved changes, undo and redo."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from qarac_gui.core.project.config import BackboneConfig, Project, dumps_project, load_project, save_project

UNDO_LIMIT = 200


UNTITLED = "untitled"


def new_project() -> Project:
    project = Project(name=UNTITLED)
    project.backbones["encoder"] = BackboneConfig()
    # Settings that learn on 60 rows as on 60,000: 3 epochs but at least 200 steps, fresh heads at 20x the
    # encoder's small lr, a short warm-up. On 60 reviews (MiniLM) these reached 0.77 accuracy on 100 new ones,
    # where 1 epoch at one lr for all (4 steps) stayed at chance (0.52).
    project.train.epochs = 3.0
    project.train.min_steps = 200
    project.optim.head_lr = 20 * project.optim.lr
    project.optim.warmup_ratio = 0.1
    project.train.group_by_length = True    # batches of similar length: a third of the padding on the demo's data
    project.eval.every = 0
    project.root = Path.cwd()
    return project


def _child(obj: Any, part: str) -> Any:
    if isinstance(obj, dict):
        return obj[part]
    if isinstance(obj, list):              # tasks.0.head.kind
        return obj[int(part)]
    return getattr(obj, part)


def get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = _child(obj, part)
    return obj


def set_path(obj: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        obj = _child(obj, part)
    if isinstance(obj, dict):
        obj[last] = value
    else:
        setattr(obj, last, value)


class ProjectDocument(QObject):
    """Edits go through edit() so that every change can be undone and every view hears about it."""

    changed = Signal(str)            # the dotted section that changed ("" = everything)
    file_changed = Signal()          # path or saved state changed (window title, recent files)
    refused_changed = Signal()       # a field refused what was typed into it, or holds an accepted value again

    def __init__(self, project: Project | None = None, path: Path | None = None) -> None:
        super().__init__()
        self.project = project or new_project()
        self.path = path
        self._saved = dumps_project(self.project)
        self._undo: list[tuple[Project, str]] = []
        self._redo: list[tuple[Project, str]] = []
        # dotted key -> why its field refused the typed value: the project keeps its old value, which a run would
        # use unseen, so each of these blocks Start until the field holds an accepted value again
        self.refused: dict[str, str] = {}

    @property
    def dirty(self) -> bool:
        return dumps_project(self.project) != self._saved

    @property
    def title(self) -> str:
        return f"{self.project.name} ({self.path.name})" if self.path else f"{self.project.name} (not saved)"

    def edit(self, change: Callable[[Project], None], section: str = "", label: str = "edit") -> None:
        before = copy.deepcopy(self.project)
        change(self.project)
        if dumps_project(before) == dumps_project(self.project):
            return
        self._undo.append((before, label))
        del self._undo[:-UNDO_LIMIT]
        self._redo.clear()
        self.changed.emit(section)
        self.file_changed.emit()

    def set_value(self, dotted: str, value: Any, label: str = "") -> None:
        """`label` names the field as the window shows it; Edit > Undo then reads "Undo change of <label>"."""
        if get_path(self.project, dotted) == value:
            return
        self.edit(lambda p: set_path(p, dotted, value), dotted.rsplit(".", 1)[0],
                  f"change of {label or dotted.rsplit('.', 1)[-1].replace('_', ' ')}")

    def refuse(self, dotted: str, why: str) -> None:
        if self.refused.get(dotted) != why:
            self.refused[dotted] = why
            self.refused_changed.emit()

    def accept(self, dotted: str) -> None:
        """The field of `dotted` holds the project's value (typed and accepted, or shown again)."""
        if self.refused.pop(dotted, None) is not None:
            self.refused_changed.emit()

    def accept_under(self, prefix: str) -> None:
        """Every field whose key starts with `prefix` holds the project's value again (a list of rows redrawn)."""
        gone = [key for key in self.refused if key.startswith(prefix)]
        for key in gone:
            del self.refused[key]
        if gone:
            self.refused_changed.emit()

    def _forget_refused(self) -> None:
        """Another project, or an undone one: every field shows its value again, and no refusal is about it."""
        if self.refused:
            self.refused.clear()
            self.refused_changed.emit()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_label(self) -> str:
        return self._undo[-1][1] if self._undo else ""

    def undo(self) -> None:
        if self._undo:
            before, label = self._undo.pop()
            self._redo.append((self.project, label))
            self._replace(before)

    def redo(self) -> None:
        if self._redo:
            after, label = self._redo.pop()
            self._undo.append((self.project, label))
            self._replace(after)

    def _replace(self, project: Project) -> None:
        self.project = project
        self._forget_refused()
        self.changed.emit("")
        self.file_changed.emit()

    def load(self, path: Path) -> None:
        """Open a project file (unfinished projects open too; what is missing shows in the report)."""
        project = load_project(path, check=False)
        self.project, self.path = project, Path(path).resolve()
        self._saved = dumps_project(project)
        self._undo.clear()
        self._redo.clear()
        self._forget_refused()
        self.changed.emit("")
        self.file_changed.emit()

    def mark_unsaved(self) -> None:
        self._saved = ""
        self.file_changed.emit()

    def reset(self, project: Project | None = None) -> None:
        self.project, self.path = project or new_project(), None
        self._saved = dumps_project(self.project)
        self._undo.clear()
        self._redo.clear()
        self._forget_refused()
        self.changed.emit("")
        self.file_changed.emit()

    def save(self, path: Path | None = None) -> None:
        target = Path(path or self.path).resolve()
        self.project = self.project.with_relative_paths(target.parent)
        if self.project.name == UNTITLED:           # a new project is named after its file, and so are its runs
            self.project.name = target.stem
        save_project(self.project, target)
        self.path = target
        self._saved = dumps_project(self.project)
        self.file_changed.emit()

    def write_autosave(self, path: Path) -> None:
        """A copy of unsaved work that survives a crash; the project file itself is left alone."""
        save_project(self.project.with_absolute_paths(), path)
