"""Project files for the main window: new, presets, open, save, save as, recent files, autosave and recovery."""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox

from qarac_gui.core import paths
from qarac_gui.core.project.config import ConfigError, load_project
from qarac_gui.ui.dialogs.error_dialog import show_error
from qarac_gui.ui.dialogs.run_offers import offer_continue

RECENT_LIMIT = 10
FILE_FILTER = "qarac_gui projects (*.toml);;All files (*)"


@dataclass(frozen=True)
class Preset:
    """A recipe of File > New from preset: an ordinary project file, and how the menu names it."""

    title: str
    description: str
    path: Path


def presets() -> list[Preset]:
    """The presets that resources/presets/presets.toml lists, in menu order (none when the index is absent)."""
    index = paths.resource_path("presets", "presets.toml")
    try:
        entries = tomllib.loads(index.read_text(encoding="utf-8")).get("presets", [])
    except OSError:
        return []
    return [Preset(e["title"], e["description"], index.parent / e["file"]) for e in entries]


def settings() -> QSettings:
    """Window state and recent files. A portable data folder (QARAC_GUI_DATA) keeps them beside the runs."""
    if os.environ.get("QARAC_GUI_DATA"):
        return QSettings(str(paths.data_dir() / "settings.ini"), QSettings.Format.IniFormat)
    return QSettings("qarac_gui", "qarac_gui")


def autosave_path() -> Path:
    return paths.data_dir() / "autosave" / "project.toml"


class ProjectFilesMixin:
    """The File menu's work; mixed into MainWindow, which provides document, log, charts and recent_menu."""

    def _recent(self, key: str) -> list[str]:
        value = settings().value(key, [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, key: str, item: str) -> None:
        items = [i for i in self._recent(key) if i != item]
        settings().setValue(key, [item, *items][:RECENT_LIMIT])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self._recent("recent/projects"):
            self.recent_menu.addAction(path, functools.partial(self.open_project, Path(path)))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    def _fill_preset_menu(self) -> None:
        self.preset_menu.clear()
        self.preset_menu.setToolTipsVisible(True)
        for preset in presets():
            action = self.preset_menu.addAction(preset.title, functools.partial(self.new_from_preset, preset))
            action.setToolTip(preset.description)
            action.setStatusTip(preset.description)
        self.preset_menu.setEnabled(not self.preset_menu.isEmpty())

    def confirm_discard(self) -> bool:
        """Ask before unsaved changes are lost; True when it is fine to go on."""
        if not self.document.dirty:
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", f"Save the changes to {self.document.title}?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def new_project(self) -> None:
        if self.confirm_discard():
            self.document.reset()
            self.charts.clear()
            self.run_panel.set_status("Ready.")

    def new_from_preset(self, preset: Preset) -> bool:
        """A new, unsaved project holding a copy of the preset: Save asks where, so the bundled file stays as is."""
        if not self.confirm_discard():
            return False
        try:
            project = load_project(preset.path, check=False)
        except ConfigError as e:
            show_error(self, "Cannot open the preset", str(e))
            self.log.add(str(e), "error")
            return False
        project = project.with_absolute_paths()     # a local file a preset names is still found after Save as
        project.root = Path.cwd()                   # where File > New starts too
        self.document.reset(project)                # undo starts fresh: the preset is the first state
        self.document.mark_unsaved()
        self.charts.clear()
        self.run_panel.set_status("Ready.")
        self.log.add(f"New project from the preset {preset.title!r}: {preset.description}. Save it to keep it.")
        return True

    def open_dialog(self) -> None:
        if not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a project", "", FILE_FILTER)
        if path:
            self.open_project(Path(path), ask=False)

    def open_demo(self) -> None:
        if self.confirm_discard():
            self.open_project(paths.resource_path("demo", "project.toml"), ask=False)

    def open_project(self, path: Path, ask: bool = True) -> bool:
        if ask and not self.confirm_discard():
            return False
        try:
            self.document.load(Path(path))
        except ConfigError as e:
            show_error(self, "Cannot open the project", str(e))
            self.log.add(str(e), "error")
            return False
        self._remember("recent/projects", str(Path(path).resolve()))
        self._fill_recent_menu()
        self.log.add(f"Opened {path}")
        self.charts.clear()
        self.run_panel.set_status("Ready.")
        self.run_view.show_latest_run(self.runs_base(), self.document.project.name)    # its last run's charts
        return True

    def save(self) -> bool:
        if self.document.path is None or self._is_bundled(self.document.path):
            return self.save_as()
        return self._save_to(self.document.path)

    def save_as(self) -> bool:
        start = str(self.document.path or Path.cwd() / f"{self.document.project.name}.toml")
        path, _ = QFileDialog.getSaveFileName(self, "Save the project as", start, FILE_FILTER)
        if not path:
            return False
        if not path.endswith(".toml"):
            path += ".toml"
        return self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        try:
            self.document.save(path)
        except OSError as e:
            show_error(self, "Cannot save", f"{path} could not be written: {e.strerror or e}. Choose another "
                       "folder with File > Save as.", str(e))
            return False
        self._remember("recent/projects", str(path.resolve()))
        self._fill_recent_menu()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        autosave_path().unlink(missing_ok=True)
        return True

    @staticmethod
    def _is_bundled(path: Path) -> bool:
        """The demo lives inside the app; saving goes elsewhere so an update cannot overwrite the user's work."""
        try:
            return Path(path).resolve().is_relative_to(paths.resource_path().resolve())
        except OSError:
            return False

    @Slot()
    def autosave(self) -> None:
        if not self.document.dirty:
            return
        try:
            target = autosave_path()
            target.parent.mkdir(parents=True, exist_ok=True)
            self.document.write_autosave(target)
        except OSError as e:
            self.log.add(f"autosave failed: {e}", "warning")

    def offer_recovery(self) -> None:
        """Unsaved work from a session that ended without saving (a crash, a power cut) is offered back."""
        path = autosave_path()
        if not path.is_file():
            return
        answer = QMessageBox.question(
            self, "Recover unsaved work?",
            "qarac_gui ended last time with unsaved changes. Open the automatically saved copy?",
            QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Discard, QMessageBox.StandardButton.Open)
        if answer == QMessageBox.StandardButton.Open:
            try:
                self.document.load(path)
            except ConfigError as e:
                self.log.add(f"the autosaved copy could not be opened: {e}", "error")
                return
            self.document.path = None               # Save asks where: the copy is not the user's file
            self.document.mark_unsaved()
            self.log.add("Recovered the autosaved project; save it to keep it")
        else:
            path.unlink(missing_ok=True)

    def offer_interrupted_runs(self) -> QMessageBox | None:
        """A run cut short by a crash of the app or the machine is offered for continuing (once per run)."""
        from qarac_gui.core.results.history import interrupted_runs
        dismissed = set(self._recent("runs/dismissed_interrupted"))
        runs = [r for r in interrupted_runs(self.runs_base()) if str(r.path) not in dismissed]
        if not runs or self.controller.running:
            return None
        dismiss = functools.partial(self._remember, "runs/dismissed_interrupted", str(runs[0].path))
        return offer_continue(self, runs[0], start=self.runs.start, dismiss=dismiss)
