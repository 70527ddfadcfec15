"""Keeps what the window knows about the open project current: the model's facts, each task's data preview,
the heads' sizes, the lr plan and what blocks Start. All reading happens in background jobs."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QWidget

from qarac_gui.core.data.preview import SMALL_VALIDATION, TaskPreview, preview_task, start_problems
from qarac_gui.core.model.info import ModelInfo, backbone_parameters, head_parameters, model_info
from qarac_gui.core.project.config import Project
from qarac_gui.core.training.plan import lr_curve, mixing_preview, plan_run, plan_warnings
from qarac_gui.ui.dialogs import code_consent
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.worker import Failure, JobRunner

DEBOUNCE_MS = 300


def _load_model(project: Project, name: str) -> tuple[ModelInfo, Any, Any]:
    from qarac_gui.core.model.backbone import load_backbone
    cfg = project.backbones[name]
    loaded = load_backbone(cfg, project.root, name=name)
    return model_info(cfg.model, loaded), loaded.tokenizer, loaded.model


def _task_key(project: Project, index: int) -> tuple:
    t = project.tasks[index]
    return (str(project.root), project.train.seed, t.name, repr(t.data), t.head.kind, tuple(t.head.labels),
            t.head.label_separator, t.max_length, repr(t.inputs), t.head.compare, t.head.decoder)


class ProjectChecks(QObject):
    """Derived state of the open project, refreshed in the background as it changes."""

    model_loading = Signal(str)                 # the model being read
    model_loaded = Signal(object)               # ModelInfo
    model_failed = Signal(str)
    preview_ready = Signal(object)              # TaskPreview
    head_params_ready = Signal(dict)
    trainable_ready = Signal(str, object, str)  # backbone, TrainableCount or why not, repr of the settings counted
    plan_changed = Signal(object, str)          # lr curves (or None), a note on the plan
    advice_changed = Signal(list)               # what would make the run learn little (the core's words)
    mix_changed = Signal(dict)                  # task -> TaskShare of the plan; empty while unknown
    problems_changed = Signal(list)
    download_progress = Signal(str)             # a Hub dataset's files coming down for a preview

    def __init__(self, document: ProjectDocument, jobs: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.document, self.jobs = document, jobs
        self.info: ModelInfo | None = None
        self.tokenizer: Any = None
        self.encoder: Any = None
        self.model_error = ""
        self.model_spec = ""
        self.model_backbone = "encoder"
        self.chosen_backbone = ""             # the backbone the Model tab shows; "" or gone: the main one
        self.previews: dict[str, TaskPreview] = {}
        self.pending: set[str] = set()
        self._keys: dict[str, tuple] = {}
        self.problems: list[str] = []
        self.advice: list[str] = []
        self.planned_steps = 0                # what Start would train; 0 while unknown
        self._counted: tuple = ()             # what the last trainable count was made for
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh)
        document.changed.connect(self._on_document_changed)
        document.refused_changed.connect(self._update_problems)       # at once: Start must not wait for the debounce
        jobs.finished.connect(self._on_job_finished)

    @Slot(str)
    def _on_document_changed(self, section: str) -> None:
        self._timer.start()

    def refresh(self, force: bool = False) -> None:
        """Start whatever jobs the current project needs; recompute the plan and the blockers now."""
        project = self.document.project
        spec = self._model_spec(project)
        if spec != self.model_spec or force:
            self.load_model()
        names = {t.name for t in project.tasks}
        for name in list(self.previews):
            if name not in names:
                del self.previews[name]
        for i, task in enumerate(project.tasks):
            key = _task_key(project, i)
            if force or self._keys.get(task.name) != key:
                self.request_preview(task.name)
        self._request_trainable()
        self._update_plan()
        self._update_problems()

    def use_backbone(self, name: str) -> None:
        """Read this backbone's model for the facts, the head sizes and the token counts (when it differs)."""
        self.chosen_backbone = name
        if self._model_spec(self.document.project) == self.model_spec and name in self.document.project.backbones:
            self.model_backbone = name        # the same model read the same way: nothing to load again
        self.refresh()

    def _reads_like_loaded(self, project: Project) -> set[str]:
        """The backbones the loaded model's tokenizer and limits stand for: those of the same model."""
        loaded = project.backbones.get(self.model_backbone)
        if loaded is None:
            return set()
        return {n for n, bb in project.backbones.items() if (bb.model, bb.revision) == (loaded.model, loaded.revision)}

    def _backbone_name(self, project: Project) -> str:
        if self.chosen_backbone in project.backbones:
            return self.chosen_backbone
        return "encoder" if "encoder" in project.backbones else next(iter(project.backbones), "")

    def _model_spec(self, project: Project) -> str:
        """What the loaded model depends on. Not freezing, pooling or adapters: reading a large model again for a
        LoRA rank would cost seconds and its memory twice over; the counts that do depend on them have jobs of
        their own."""
        bb = project.backbones.get(self._backbone_name(project))
        if bb is None or not bb.model.strip():
            return ""
        return repr((str(project.root), bb.model, bb.revision, bb.trust_remote_code, bb.allow_pickle, bb.role))

    def load_model(self) -> None:
        project = copy.deepcopy(self.document.project)
        self.model_spec = self._model_spec(project)
        self.info = self.tokenizer = self.encoder = None
        self.model_error = ""
        if not self.model_spec:
            return
        name = self._backbone_name(project)
        self.model_backbone = name
        parent = self.parent()
        code_consent.confirm(parent if isinstance(parent, QWidget) else None, project, [name])
        self.model_loading.emit(project.backbones[name].model)
        self.jobs.submit("model", lambda: _load_model(project, name), uses_transformers=True)

    def request_preview(self, name: str) -> None:
        project = copy.deepcopy(self.document.project)
        try:
            task = project.task(name)
        except KeyError:
            return
        tokenizer = self.tokenizer if task.main_backbone in self._reads_like_loaded(project) else None
        self.pending.add(name)
        # what this preview was read for, whoever asked (an edit, or the model's tokenizer arriving): the next
        # refresh compares with it, so an undo back to an earlier state is read again
        self._keys[name] = _task_key(project, [t.name for t in project.tasks].index(name))

        def job() -> TaskPreview:
            if task.data.hub:
                self._fetch_hub_data(task)
            return preview_task(project, task, tokenizer)
        self.jobs.submit(f"preview:{name}", job, uses_transformers=True)

    def _fetch_hub_data(self, task) -> None:
        """Runs in the job's thread; the signal crosses to the window's thread by itself (a queued connection)."""
        from qarac_gui.core.data.hub import fetch_task_data
        from qarac_gui.core.model.hub import HubError, download_message, throttled
        d = task.data
        try:
            fetch_task_data(d, progress=throttled(lambda p: self.download_progress.emit(download_message(d.hub, p)),
                                                  0.2))
        except HubError as e:          # the preview reads the dataset next and reports the problem in its words
            self.download_progress.emit(f"{d.hub}: {e}")

    def _request_head_params(self) -> None:
        if self.encoder is None:
            return
        project = copy.deepcopy(self.document.project)
        labels = {n: p.labels for n, p in self.previews.items()}
        encoder = self.encoder
        self.jobs.submit("heads", lambda: head_parameters(project, encoder, labels), uses_transformers=True)

    def _request_trainable(self) -> None:
        """Count what a run trains of the loaded backbone, again whenever its freezing or adapters change."""
        project, name = self.document.project, self.model_backbone
        if self.encoder is None or name not in project.backbones:
            return
        key = (self.model_spec, repr(project.backbones[name]))
        if key == self._counted:
            return
        self._counted = key
        project, encoder, settings = copy.deepcopy(project), self.encoder, key[1]
        self.jobs.submit(f"trainable:{name}", lambda: (settings, backbone_parameters(project, name, encoder)),
                         uses_transformers=True)

    @Slot(str, object)
    def _on_job_finished(self, key: str, result: Any) -> None:
        if key.startswith("trainable:"):
            settings, count = ("", result.message) if isinstance(result, Failure) else result
            self.trainable_ready.emit(key.split(":", 1)[1], count, settings)
        elif key == "model":
            if isinstance(result, Failure):
                self.model_error = result.message if result.user_error else f"the model could not be loaded: " \
                                                                             f"{result.message}"
                self.model_failed.emit(self.model_error)
            else:
                self.info, self.tokenizer, self.encoder = result
                self.model_loaded.emit(self.info)
                for task in self.document.project.tasks:      # truncation needs the tokenizer
                    self.request_preview(task.name)
                self._request_head_params()
                self._counted = ()
                self._request_trainable()
        elif key.startswith("preview:"):
            name = key.split(":", 1)[1]
            self.pending.discard(name)
            if isinstance(result, Failure):
                result = TaskPreview(name, errors=[f"task {name}: the data could not be read: {result.message}"])
            self.previews[name] = result
            self.preview_ready.emit(result)
            self._update_plan()
            self._request_head_params()
        elif key == "heads" and isinstance(result, dict):
            self.head_params_ready.emit(result)
        self._update_problems()

    def sizes(self) -> dict[str, int] | None:
        project = self.document.project
        sizes = {}
        for task in project.tasks:
            preview = self.previews.get(task.name)
            if preview is None or preview.errors:
                return None
            sizes[task.name] = preview.train_rows
        return sizes

    def _set_advice(self, advice: list[str], steps: int) -> None:
        self.planned_steps = steps
        if advice != self.advice:
            self.advice = advice
            self.advice_changed.emit(advice)

    def _update_plan(self) -> None:
        project = self.document.project
        small = [w for p in self.previews.values() for w in p.warnings if SMALL_VALIDATION in w]
        if not project.tasks:
            self._set_advice([], 0)
            self.plan_changed.emit(None, "Add a task to see the schedule.")
            return
        sizes = self.sizes()
        if sizes is None and not project.train.max_steps:
            self._set_advice(small, 0)
            self.plan_changed.emit(None, "The schedule appears once every task's data has been read.")
            return
        try:
            plan = plan_run(project, sizes or {t.name: 1 for t in project.tasks})
            curves = lr_curve(project, plan.total_steps)
        except (ValueError, ZeroDivisionError, KeyError, OverflowError) as e:
            self._set_advice(small, 0)
            self.plan_changed.emit(None, f"No schedule: {e}")
            return
        self._set_advice(plan_warnings(project, plan) + small, plan.total_steps)
        self.mix_changed.emit(mixing_preview(project, sizes, plan) if sizes is not None else {})
        note = f"{plan.total_steps} optimiser steps"
        if sizes is not None and not project.train.max_steps:
            batches = plan.batches_per_epoch[plan.epoch_task]
            note += f" ({project.train.epochs:g} epochs of {plan.epoch_task}: {batches} batches each"
            note += f"{_raised_by_minimum(project, sizes, plan.total_steps)})"
        note += f"; peak lr {max(curves['encoder'], default=0):.3g} (encoder), {max(curves['heads'], default=0):.3g} " \
                "(heads)."
        self.plan_changed.emit(curves, note)

    def _update_problems(self) -> None:
        project = self.document.project
        error = self.model_error
        if error and not error.startswith("backbones.") and self.model_backbone in project.backbones:
            error = f"backbones.{self.model_backbone}.model: {error}"      # the window names and links the field
        problems = refused_problems(self.document) + start_problems(project, self.previews, error)
        if self.encoder is not None:     # the loaded backbone's position limit, known without a run
            from qarac_gui.core.model.positions import max_length_problems
            names = self._reads_like_loaded(project)
            problems += max_length_problems(project, dict.fromkeys(names, self.encoder.config),
                                            dict.fromkeys(names, self.tokenizer))
        waiting = [t.name for t in project.tasks if t.name in self.pending or t.name not in self.previews]
        if waiting and not problems:
            problems = [f"reading the data of {', '.join(waiting)}…"]
        if problems != self.problems:
            self.problems = problems
            self.problems_changed.emit(problems)

    @property
    def ready(self) -> bool:
        return not self.problems


def refused_problems(document: ProjectDocument) -> list[str]:
    """The values fields refused, as the core words a problem ("tasks.sentiment.weight: 'x' is not a number …"), so
    that they block Start and are named and linked like the others."""
    out = []
    for key, why in document.refused.items():
        parts = key.split(".")
        if parts[0] == "tasks" and len(parts) > 1 and parts[1].isdigit():
            index = int(parts[1])
            if index >= len(document.project.tasks):
                continue            # the task is gone, and with it the field's value
            parts[1] = document.project.tasks[index].name
        out.append(f"{'.'.join(parts)}: {why}")
    return out


def _raised_by_minimum(project: Project, sizes: dict[str, int], total: int) -> str:
    """Why a plan has more steps than its epochs make: "3 epochs: 4 batches each" above 200 steps reads as a
    miscount unless it says that Minimum steps raised it."""
    if not project.train.min_steps or total != project.train.min_steps:
        return ""
    unraised = copy.copy(project)
    unraised.train = dataclasses.replace(project.train, min_steps=0)
    steps = plan_run(unraised, sizes).total_steps
    return f", {steps} steps; raised to “Minimum steps”" if steps < total else ""
