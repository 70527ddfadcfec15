"""The main window: assembles the panels and wires their signals; runs are RunControl's, their display RunView's."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
    QWidgetAction,
)

from qarac_gui.core import paths
from qarac_gui.ui.dialogs import help as help_dialogs
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.field_words import FieldWords, Place
from qarac_gui.ui.form import SpinBox
from qarac_gui.ui.panels.charts_panel import ChartsPanel
from qarac_gui.ui.panels.log_panel import LogPanel
from qarac_gui.ui.panels.model_panel import ModelPanel
from qarac_gui.ui.panels.run_panel import RunPanel
from qarac_gui.ui.panels.tasks_panel import TasksPanel
from qarac_gui.ui.panels.training_panel import TrainingPanel
from qarac_gui.ui.project_checks import ProjectChecks
from qarac_gui.ui.project_files import ProjectFilesMixin, autosave_path, settings
from qarac_gui.ui.run_control import RunControl
from qarac_gui.ui.run_follower import WindowRunController
from qarac_gui.ui.run_view import RunView
from qarac_gui.ui.worker import JobRunner

CHART_REFRESH_MS = 100
AUTOSAVE_MS = 60_000
STARTUP_DELAY_MS = 150


def _list_devices() -> list:
    from qarac_gui.core.model.devices import list_devices
    return list_devices()


def _count_gpus() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class MainWindow(ProjectFilesMixin, QMainWindow):
    """qarac_gui's window."""

    def __init__(self, document: ProjectDocument | None = None) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.document = document or ProjectDocument()
        self.jobs = JobRunner(self)
        self.checks = ProjectChecks(self.document, self.jobs, self)
        self.controller = WindowRunController(self)

        self.model_panel = ModelPanel(self.document)
        self.tasks_panel = TasksPanel(self.document)
        self.training_panel = TrainingPanel(self.document)
        self.words = FieldWords({"model": self.model_panel, "tasks": self.tasks_panel.editor,
                                 "training": self.training_panel})
        self.run_panel = RunPanel()
        self.charts = ChartsPanel()
        self.log = LogPanel()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("setup_tabs")
        self.tabs.addTab(self.model_panel, "1 · Base model")
        self.tabs.addTab(self.tasks_panel, "2 · Tasks and heads")
        self.tabs.addTab(self.training_panel, "3 · Training")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 8, 4)          # the charts and the log keep off the window's edge
        rl.addWidget(self.run_panel)
        self.right_split = QSplitter(Qt.Orientation.Vertical)
        self.right_split.setObjectName("right_split")
        self.right_split.addWidget(self.charts)
        self.right_split.addWidget(self.log)
        self.right_split.setSizes([560, 160])
        rl.addWidget(self.right_split, 1)
        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("main_split")
        self.main_split.addWidget(self.tabs)
        self.main_split.addWidget(right)
        self.main_split.setSizes([640, 720])
        self.setCentralWidget(self.main_split)
        self.statusBar().showMessage("Ready")
        # the view subscribes first: a run's end is shown before RunControl offers what to do next
        self.run_view = RunView(self.controller, self.charts, self.run_panel, self.log, self.statusBar(), self)
        self.runs = RunControl(self.controller, self.document, self.checks, self.run_view, self.runs_base, self)

        self._make_actions()
        self._connect()
        self.chart_timer = QTimer(self)
        self.chart_timer.setInterval(CHART_REFRESH_MS)
        self.chart_timer.timeout.connect(self.charts.flush_in_turns)
        self.chart_timer.start()
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        self._restore_settings()
        self._on_document_file_changed()
        self._update_run_state()
        # Reading the model and the data imports torch and datasets: start it once the window is up.
        QTimer.singleShot(STARTUP_DELAY_MS, self._on_startup_timer)

    # --- construction ---------------------------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _make_actions(self) -> None:
        S = QKeySequence.StandardKey
        a = self.actions_by_name = {
            "new": self._action("&New project", self.new_project, S.New),
            "open": self._action("&Open…", self.open_dialog, S.Open),
            "demo": self._action("Open the &demo project", self.open_demo),
            "save": self._action("&Save", self.save, S.Save),
            "save_as": self._action("Save &as…", self.save_as, S.SaveAs),
            "export": self._action("&Export models…", self.export_dialog, "Ctrl+E",
                                   "Copy the models a run exported to a folder of your choice"),
            "follow": self._action("&Follow a run folder…", self.follow_dialog,
                                   tip="Show the charts of a run another process trains (qarac-train or torchrun, "
                                       "on this machine or another that shares the folder) while it runs"),
            "unfollow": self._action("Stop fo&llowing the run", self.runs.give_up_following,
                                     tip="Stop showing the followed run; the run itself goes on"),
            "quit": self._action("&Quit", self.close, S.Quit),
            "undo": self._action("&Undo", self.document.undo, S.Undo),
            "redo": self._action("&Redo", self.document.redo, S.Redo),
            "add_task": self._action("Add &task", self.tasks_panel.add_task, "Ctrl+T"),
            "start": self._action("&Start training", self._on_start_triggered, "Ctrl+R"),
            "pause": self._action("&Pause", self.runs.toggle_pause, "Ctrl+P"),
            "stop": self._action("S&top (save a checkpoint)", self.runs.stop, "Ctrl+."),
            "continue": self._action("&Continue a stopped run…", self.history_dialog),
            "find_batch": self._action("Find the largest &batch sizes", self.runs.find_batch_sizes,
                                       tip="Try each task's longest rows in growing batches on the GPU"),
            "history": self._action("Run &history…", self.history_dialog, "Ctrl+H"),
            "try_it": self._action("&Try it…", self.try_it_dialog,
                                   tip="Type text and see what a run's model predicts, from its export or its latest "
                                       "checkpoint"),
            "runs_folder": self._action("Runs &folder…", self.choose_runs_folder,
                                        tip="Where new runs (checkpoints, charts, exports) are kept"),
            "docs": self._action("&Documentation", lambda: help_dialogs.show_docs(self), S.HelpContents,
                                 "The guides to the window, the project file and the command line, offline"),
            "shortcuts": self._action("&Keyboard shortcuts", lambda: help_dialogs.show_shortcuts(self)),
            "first_project": self._action("&First project", lambda: help_dialogs.show_first_project(self),
                                          tip="The steps from an empty project to an exported model"),
            "about": self._action("&About qarac_gui", self.about),
        }
        self.runs.bind_probe_action(a["find_batch"])        # enabled with a GPU and no run
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(a["new"])
        self.preset_menu = file_menu.addMenu("New from &preset")
        for key in ("open", "demo"):
            file_menu.addAction(a[key])
        self.recent_menu = file_menu.addMenu("Open &recent")
        for key in ("save", "save_as", None, "export", None, "follow", "unfollow", None, "quit"):
            file_menu.addSeparator() if key is None else file_menu.addAction(a[key])
        edit = bar.addMenu("&Edit")
        for key in ("undo", "redo", None, "add_task"):
            edit.addSeparator() if key is None else edit.addAction(a[key])
        run_menu = self.run_menu = bar.addMenu("&Run")
        for key in ("start", "pause", "stop", None, "find_batch", None, "continue", "history", "try_it", "runs_folder"):
            run_menu.addSeparator() if key is None else run_menu.addAction(a[key])
        run_menu.addSeparator()
        run_menu.addAction(self._processes_action())
        run_menu.aboutToShow.connect(self.update_try_it)
        self.update_try_it()
        help_menu = bar.addMenu("&Help")
        for key in ("docs", "shortcuts", "first_project", None, "about"):
            help_menu.addSeparator() if key is None else help_menu.addAction(a[key])
        self._fill_preset_menu()
        self._fill_recent_menu()

    def _connect(self) -> None:
        d, c, ch = self.document, self.controller, self.checks
        d.file_changed.connect(self._on_document_file_changed)
        for signal in (d.changed, c.running_changed, c.paused_changed, ch.problems_changed, ch.advice_changed):
            signal.connect(self._update_run_state)
        ch.model_loading.connect(self._on_checks_model_loading)
        ch.model_loaded.connect(self._on_checks_model_loaded)
        ch.model_failed.connect(self._on_checks_model_failed)
        ch.preview_ready.connect(self.tasks_panel.show_preview)
        ch.head_params_ready.connect(self.model_panel.show_head_params)
        ch.trainable_ready.connect(self.model_panel.show_trainable)
        ch.plan_changed.connect(self.training_panel.show_lr_preview)
        ch.plan_changed.connect(self._on_checks_plan_changed)
        ch.mix_changed.connect(self.training_panel.show_mix)
        ch.download_progress.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        self.model_panel.load_requested.connect(self.checks.load_model)
        self.model_panel.hub_requested.connect(self.hub_dialog)
        self.model_panel.backbone_selected.connect(self.checks.use_backbone)
        self.jobs.finished.connect(self._on_jobs_finished)
        self.tasks_panel.preview_requested.connect(self.checks.request_preview)
        self.tasks_panel.hub_dataset_requested.connect(self.dataset_dialog)
        rp = self.run_panel
        rp.start_clicked.connect(self.runs.start)
        rp.pause_clicked.connect(lambda: self.runs.set_paused(True))
        rp.resume_clicked.connect(lambda: self.runs.set_paused(False))
        c.restarted.connect(self.charts.clear)          # a followed run folder got a new log
        rp.stop_clicked.connect(self.runs.stop)
        rp.problem_clicked.connect(self.go_to)

    # --- settings -------------------------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = settings()
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1360, 860)
        for splitter in (self.main_split, self.right_split, self.tasks_panel.splitter):
            state = s.value(f"splitters/{splitter.objectName()}")
            if state is not None:
                splitter.restoreState(state)
        self.model_panel.set_recent(self._recent("recent/models"))
        try:
            self.processes_spin.setValue(int(s.value("runs/processes", 0)))
        except (TypeError, ValueError):
            pass                            # a hand-edited setting: keep the default

    def _save_settings(self) -> None:
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        for splitter in (self.main_split, self.right_split, self.tasks_panel.splitter):
            s.setValue(f"splitters/{splitter.objectName()}", splitter.saveState())

    def runs_base(self) -> Path:
        value = settings().value("runs/folder", "")
        return Path(value) if value else paths.runs_dir()

    def _processes_action(self) -> QWidgetAction:
        """Run > Processes: how many processes Start trains in (torchrun with more than one); a window setting,
        since the results do not depend on it."""
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(24, 2, 8, 2)
        spin = self.processes_spin = SpinBox()
        spin.setObjectName("processes_spin")
        spin.setRange(0, 64)
        spin.setSpecialValueText("one per GPU")
        spin.setToolTip("Processes a run trains in, each with its slice of every batch. More than one starts "
                        "torchrun (one per GPU, or gloo on the CPU); one trains inside the window. The lr plan, the "
                        "steps and the charts stay the same.")
        label = QLabel("&Processes:")
        label.setBuddy(spin)
        row.addWidget(label)
        row.addWidget(spin)
        spin.valueChanged.connect(self._on_processes_spin_value_changed)
        action = QWidgetAction(self)
        action.setDefaultWidget(box)
        return action

    def _on_processes_spin_value_changed(self, value: int) -> None:
        self.runs.processes = value
        settings().setValue("runs/processes", value)

    def follow_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Follow the run in", str(self.runs_base()))
        if folder:
            self.runs.follow(folder)

    def choose_runs_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Keep new runs in", str(self.runs_base()))
        if folder:
            settings().setValue("runs/folder", folder)
            self.log.add(f"New runs go to {folder}")

    # --- project files --------------------------------------------------------------------------------------
    def _on_document_file_changed(self) -> None:
        self.setWindowTitle(f"{self.document.title}[*] — qarac_gui")
        self.setWindowModified(self.document.dirty)
        self.actions_by_name["undo"].setEnabled(self.document.can_undo())
        self.actions_by_name["redo"].setEnabled(self.document.can_redo())
        label = self.document.undo_label()
        self.actions_by_name["undo"].setText(f"&Undo {label}" if label else "&Undo")

    # --- model and checks -----------------------------------------------------------------------------------
    def _on_startup_timer(self) -> None:
        self.checks.refresh(force=True)
        self.jobs.submit("devices", _list_devices)
        self.jobs.submit("gpus", _count_gpus)

    def _on_jobs_finished(self, key: str, result) -> None:
        if key == "devices" and isinstance(result, list):
            self.training_panel.set_devices(result)

    def _on_checks_model_loading(self, spec: str) -> None:
        self.model_panel.set_busy(True, f"Loading {spec}…")
        self.log.add(f"Loading the model {spec}")

    def _on_checks_model_loaded(self, info) -> None:
        self.model_panel.show_info(info)
        self._remember("recent/models", info.spec)
        self.model_panel.set_recent(self._recent("recent/models"))
        self.log.add(f"Model {info.spec}: {info.architecture}, {info.parameters:,} parameters"
                     + (f"; removed {info.removed}" if info.removed else ""))

    def _on_checks_model_failed(self, message: str) -> None:
        self.model_panel.show_error(message)
        self.log.add(message, "error")

    def _update_run_state(self) -> None:
        """The run's actions and buttons follow the run, its pause, the project and what blocks Start."""
        running, paused = self.controller.running, self.controller.paused
        project = self.document.project
        self.run_panel.set_state(running, paused, self.words.blockers(self.checks.problems, project))
        self.run_panel.set_advice(self.words.blockers(self.checks.advice, project))
        if not running and self.checks.planned_steps and self.run_view.run_dir is None:
            self.run_panel.show_plan(self.checks.planned_steps)
        a = self.actions_by_name
        a["start"].setEnabled(not running and not self.checks.problems)
        a["pause"].setEnabled(running)
        a["pause"].setText("&Resume" if paused else "&Pause")
        a["stop"].setEnabled(running)
        a["continue"].setEnabled(not running)
        a["export"].setEnabled(not running)
        a["follow"].setEnabled(not running)
        a["unfollow"].setEnabled(self.controller.following_elsewhere)
        self.processes_spin.setEnabled(not running)

    def _on_checks_plan_changed(self, *_) -> None:
        """After an edit the bar says what Start would train now (a finished run's last step stays in the log)."""
        if not self.controller.running and self.checks.planned_steps:
            self.run_panel.show_plan(self.checks.planned_steps)

    def go_to(self, place: Place) -> None:
        """Show the field a problem is about: its tab, its task or backbone, the field itself with focus."""
        panels = {"model": self.model_panel, "tasks": self.tasks_panel, "training": self.training_panel}
        panel = panels.get(place.tab)
        if panel is None:
            return
        self.tabs.setCurrentWidget(panel)
        if place.task:
            self.tasks_panel.select(place.task)
        if place.backbone:
            self.model_panel.backbones.select(place.backbone)
        target = panel.findChild(QWidget, place.field) if place.field else None
        if target is None or not target.isVisibleTo(panel):
            target = self.tasks_panel.list if place.task else (
                self.model_panel.model_edit if place.tab == "model" else None)
        if target is None:
            return
        parent = target.parentWidget()
        while parent is not None and not isinstance(parent, QScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            parent.ensureWidgetVisible(target)
        target.setFocus(Qt.FocusReason.OtherFocusReason)

    # --- runs: the public entry points (app.py, the self-test, the SIGTERM handler, tests) -------------------
    @property
    def last_run_dir(self) -> Path | None:
        return self.run_view.run_dir

    def start_run(self, resume_dir: Path | None = None, lr_scale: float = 1.0) -> bool:
        return self.runs.start(resume_dir, lr_scale)

    def _on_start_triggered(self) -> None:
        """Ctrl+R does what a click on Start does: the field being typed in is left first, so that its value counts,
        or is refused and blocks Start, rather than the run taking the value the project kept."""
        focus = QApplication.focusWidget()
        if focus is not None and self.isAncestorOf(focus):
            focus.clearFocus()
            focus.setFocus(Qt.FocusReason.OtherFocusReason)
        self.runs.start()

    def stop_run(self) -> None:
        self.runs.stop()

    def terminate(self) -> None:
        self.runs.terminate()

    # --- dialogs --------------------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        from qarac_gui.ui.dialogs.export_dialog import ExportDialog
        dialog = ExportDialog(self.runs_base(), self.last_run_dir, self)
        dialog.open()

    def hub_dialog(self, endpoint: str | None = None, cache_dir: str | None = None):
        from qarac_gui.ui.dialogs.hub_dialog import HubDialog
        dialog = HubDialog(self, endpoint=endpoint, cache_dir=cache_dir)
        dialog.chosen.connect(self._on_hub_chosen)
        dialog.open()
        return dialog

    def dataset_dialog(self, index: int, endpoint: str | None = None):
        from qarac_gui.ui.dialogs.dataset_dialog import DatasetDialog
        dialog = DatasetDialog(self, endpoint=endpoint)
        dialog.chosen.connect(functools.partial(self.tasks_panel.editor.set_hub_dataset, index))
        dialog.open()
        return dialog

    def _on_hub_chosen(self, repo_id: str) -> None:
        self.model_panel.choose(repo_id)
        self.log.add(f"Using {repo_id} from the Hub (cached)")

    def history_dialog(self) -> None:
        from qarac_gui.ui.dialogs.history_dialog import HistoryDialog
        dialog = HistoryDialog(self.runs_base(), self)
        dialog.show_run.connect(self.run_view.show_past_run)
        dialog.overlay_run.connect(self.run_view.overlay_past_run)
        dialog.continue_run.connect(self.runs.start)
        dialog.run_deleted.connect(lambda _path: self.update_try_it())
        dialog.open()

    def update_try_it(self) -> None:
        """Try it is for runs with a model: an export or a checkpoint (the current run's, or any in the folder)."""
        from qarac_gui.core.results.predict import has_model, runs_with_models
        current = self.last_run_dir
        found = (current is not None and has_model(current)) or bool(runs_with_models(self.runs_base()))
        self.actions_by_name["try_it"].setEnabled(found)

    def try_it_dialog(self):
        from qarac_gui.ui.dialogs.try_it import TryItDialog
        dialog = getattr(self, "_try_it", None)
        if dialog is None:          # one window, kept: its model stays loaded between openings
            dialog = self._try_it = TryItDialog(self.runs_base(), self.last_run_dir, self)
        else:
            dialog.refresh_runs(self.last_run_dir)
        dialog.show()
        dialog.raise_()
        return dialog

    def about(self) -> None:
        import qarac_gui
        QMessageBox.about(self, "About qarac_gui",
                          f"qarac_gui {qarac_gui.__version__}\n\nFine-tune one shared encoder on several tasks at "
                          "once, watch it train, export models that plain transformers loads.\n\n"
                          f"Runs are kept in {self.runs_base()}")

    def open_folder(self, path: Path) -> None:
        if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    # --- closing --------------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        if self.runs.holds_close():
            event.ignore()                  # closes for real once the run has ended
            return
        if self.runs.terminating:
            if self.document.dirty:
                self.autosave()
        elif not self.confirm_discard():
            self.runs.close_after_run = False
            event.ignore()
            return
        self._save_settings()
        self.chart_timer.stop()
        self.autosave_timer.stop()
        self.jobs.wait(30_000)
        if not self.document.dirty:
            autosave_path().unlink(missing_ok=True)
        event.accept()
