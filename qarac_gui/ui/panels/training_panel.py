"""Training settings, each with a tooltip that says what it does and why, and a live preview of the lr schedule."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.project.config import BALANCINGS, MIXING, OPTIMIZERS, PRECISIONS, SCHEDULERS
from qarac_gui.core.project.limits import MAX_STEPS
from qarac_gui.ui.bar_charts import MixChart
from qarac_gui.ui.charts import LiveChart
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.form import Binder, set_relevant
from qarac_gui.ui.worker import Failure, JobRunner

TIPS = {
    "optim.lr": "Peak learning rate of the encoder. Keep it small (about 1e-5 to 5e-5 for NLP encoders): large "
                "steps overwrite what the base model learnt in pre-training (catastrophic forgetting).",
    "optim.head_lr": "Learning rate of the new heads (0: same as the encoder). Fresh heads start from random "
                     "weights and can learn 10-100x faster than the pretrained encoder without harm.",
    "optim.scheduler": "How the lr changes over the run. Lowering it towards the end lets the model settle and "
                       "limits drift away from what it knew.",
    "optim.warmup_steps": "Steps over which the lr rises from 0 to its peak. Early gradients from random heads "
                          "are large; warm-up keeps them from damaging the encoder.",
    "optim.warmup_ratio": "Warm-up as a share of all steps (used when warm-up steps is 0).",
    "optim.gamma": "Exponential scheduler: after warm-up the lr is multiplied by this every step (0.9999 leaves "
                   "about 37% of the peak after 10,000 steps).",
    "optim.optimizer": "AdamW is the usual choice for fine-tuning. NAdam adds Nesterov momentum (a look-ahead "
                       "along the running average of the gradients), which sometimes converges faster; both "
                       "decouple the weight decay, so the other settings mean the same.",
    "optim.weight_decay": "Pulls weights towards zero, apart from the gradient step (decoupled, as in AdamW); a "
                          "mild regulariser.",
    "optim.layer_decay": "Multiplies the lr for each layer further down the encoder (e.g. 0.9). Lower layers hold "
                         "general knowledge, so they move less.",
    "optim.grad_clip": "Caps the gradient norm (0: off); stops one bad batch from wrecking the weights.",
    "optim.grad_accum": "Add up gradients over this many batches per optimiser step: a larger effective batch "
                        "without more memory.",
    "optim.head_warmup_steps": "Train only the heads for this many steps with the encoder fixed, so random heads "
                               "do not push noise into it.",
    "train.max_steps": "Length in optimiser steps (0: use epochs).",
    "train.epochs": "Length in epochs of the epoch task (the largest task unless chosen).",
    "train.min_steps": "With epochs: at least this many optimiser steps. A small dataset is then seen for more "
                       "epochs instead of too few steps for the heads to learn; on large data the epochs decide.",
    "train.mixing": "How tasks share the steps. all_tasks: every step takes a batch of every task and sums the "
                    "losses, so all objectives train together and none is forgotten. The others pick one task per "
                    "step (by size, by size with temperature, evenly, or in turn).",
    "train.balancing": "How the tasks' gradients are combined. Fixed weights: each loss times its task's weight (the "
                       "default). Uncertainty: each task learns its own weight, which helps when the losses have "
                       "very different scales (a regression beside a classifier). UPGrad, PCGrad and MGDA (torchjd, "
                       "all-tasks mixing only) change the shared encoder's gradient so that no task's gradient is "
                       "undone by another's; they help when tasks pull the encoder in opposite directions, cost a "
                       "gradient copy per task, and on agreeing tasks change little. See docs/balancing.md.",
    "train.balancing_lr": "Uncertainty balancing: the learning rate of the tasks' learnt log-variances (with the "
                          "heads' schedule). The encoder's 1e-5 would hardly move them.",
    "train.group_by_length": "Draw each batch from rows of similar length, still in random order: far less "
                             "padding, so faster steps (on the demo's data 8.6 % padding instead of 30 %). It "
                             "changes which rows meet in a batch, so the same seed gives other weights.",
    "train.temperature": "For temperature mixing: above 1 gives small tasks more turns than their size.",
    "train.precision": "auto uses bf16 (or fp16) mixed precision on a GPU: faster and less memory. CPU runs fp32.",
    "train.device": "Where to train.",
    "train.compile": "Compile the encoders with torch.compile: faster steps on a GPU once compiled (the first "
                     "steps wait a minute or more). Needs Triton on a GPU, a C++ compiler on the CPU. A compiled "
                     "run resumes to float rounding, not to the last bit.",
    "train.seed": "Same seed, same data order and initial heads: runs can be repeated exactly.",
    "train.log_every": "Report the losses every N steps (one device sync per report).",
    "eval.every": "Validate every N steps (0: only at the end).",
    "eval.patience": "Stop early after this many validations without improvement (0: off).",
    "eval.keep_best": "Export the weights of the best validation instead of the last step.",
    "eval.task_patience": "Stop each task on its own after this many validations without improvement of its own "
                          "metric (0: off): its head is frozen and its batches go to the other tasks, and it is "
                          "exported from its best validation. The run ends once every task has stopped; a task "
                          "without validation data never stops.",
    "eval.forgetting_alert": "Warn when a keep task (evaluated only, never trained) gets this much worse than at "
                             "step 0, relative to its step-0 value: 0.10 is 10 % worse (a higher perplexity or loss, "
                             "a lower accuracy). 0 turns the alert off.",
    "eval.forgetting_pause": "Pause the run when the forgetting alert fires; Resume goes on.",
    "checkpoint.every": "Save a checkpoint every N steps (0: only when you stop); a run can continue from it.",
    "checkpoint.minutes": "Also save one at least this often, so a crash or power cut loses at most this much "
                          "training (0: off).",
    "train.skip_limit": "A step whose loss or gradients are NaN or infinite is skipped. After this many in a row "
                        "the run stops and offers to roll back to the last checkpoint at a lower learning rate "
                        "(0: never stop).",
}
OPTIMIZER_LABELS = {"adamw": "AdamW", "nadam": "NAdam"}
BALANCING_LABELS = {"weights": "Fixed weights", "uncertainty": "Uncertainty (learnt weights)",
                    "upgrad": "UPGrad (torchjd)", "pcgrad": "PCGrad (torchjd)", "mgda": "MGDA (torchjd)"}


class TrainingPanel(QScrollArea):
    """Optimiser, schedule, length, mixing, precision, device; the lr curve those give."""

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.setWidgetResizable(True)
        body = QWidget()
        self.setWidget(body)
        layout = QVBoxLayout(body)
        b = self.binder = Binder(document)
        name_row = QFormLayout()
        self.name_edit = b.text("name", "The project's name. Its runs are saved in folders named after it and the "
                                "time they started.", "e.g. reviews")
        name_row.addRow("Project name", self.name_edit)
        layout.addLayout(name_row)
        self.lr_chart = LiveChart("Learning-rate schedule", "lr", log_y=True,    # heads' lr is often 20x
                                  empty_text="Shown once every task's data has been read")
        self.lr_chart.setObjectName("lr_preview")
        self.lr_chart.setMinimumHeight(220)
        self.lr_chart.add_series("encoder", pg.mkColor("#3b82f6"), width=2)
        self.lr_chart.add_series("heads", pg.mkColor("#f59e0b"), width=2, dashed=True)
        self.lr_chart.setMaximumHeight(300)
        layout.addWidget(self.lr_chart)
        self.plan_label = QLabel("")
        self.plan_label.setObjectName("plan_label")
        self.plan_label.setWordWrap(True)
        layout.addWidget(self.plan_label)
        self.mix_chart = MixChart()
        self.mix_chart.setFixedHeight(170)
        self.mix_chart.setToolTip("What the mixing strategy gives each task over the whole plan: passes over its "
                                  "training data (expected values for the strategies that draw at random)")
        layout.addWidget(self.mix_chart)
        self.mix_label = QLabel("")
        self.mix_label.setObjectName("mix_label")
        self.mix_label.setWordWrap(True)
        layout.addWidget(self.mix_label)
        estimate_row = QHBoxLayout()
        self.estimate_button = QPushButton("Estimate memory and time")
        self.estimate_button.setObjectName("estimate_button")
        self.estimate_button.setToolTip("Build the model as the run will and measure one pass of each task's widest "
                                        "batch: the memory the run needs on its device and the time of an epoch")
        self.estimate_button.clicked.connect(self.start_estimate)
        estimate_row.addWidget(self.estimate_button)
        self.estimate_label = QLabel("")
        self.estimate_label.setObjectName("estimate_label")
        self.estimate_label.setWordWrap(True)
        estimate_row.addWidget(self.estimate_label, 1)
        layout.addLayout(estimate_row)
        self.jobs = JobRunner(self)
        self.jobs.finished.connect(self._on_estimate_finished)
        forms = QGridLayout()
        layout.addLayout(forms)

        def group(title: str, rows: list[tuple[str, QWidget]]) -> None:
            box = QGroupBox(title)
            form = QFormLayout(box)
            for label, widget in rows:
                form.addRow(label, widget)
            n = forms.count()
            forms.addWidget(box, n // 2, n % 2)

        t = TIPS
        group("Optimiser", [
            ("Optimiser", b.choice("optim.optimizer", [(o, OPTIMIZER_LABELS.get(o, o)) for o in OPTIMIZERS],
                                   t["optim.optimizer"])),
            ("Learning rate", b.number("optim.lr", t["optim.lr"], 1e-9, 1.0)),
            ("Head learning rate", b.number("optim.head_lr", t["optim.head_lr"], 0.0, 1.0)),
            ("Weight decay", b.number("optim.weight_decay", t["optim.weight_decay"], 0.0, 1.0)),
            ("Layer lr decay", b.number("optim.layer_decay", t["optim.layer_decay"], 0.01, 1.0)),
            ("Gradient clipping", b.number("optim.grad_clip", t["optim.grad_clip"], 0.0, 1e6)),
            ("Accumulation", b.integer("optim.grad_accum", t["optim.grad_accum"], 1, 4096)),
        ])
        group("Schedule", [
            ("Scheduler", b.choice("optim.scheduler", [(s, s.replace("_", " ")) for s in SCHEDULERS],
                                   t["optim.scheduler"])),
            ("Warm-up steps", b.integer("optim.warmup_steps", t["optim.warmup_steps"], 0, 10**8)),
            ("Warm-up share", b.decimal("optim.warmup_ratio", t["optim.warmup_ratio"], 0.0, 0.99)),
            ("Heads-only steps", b.integer("optim.head_warmup_steps", t["optim.head_warmup_steps"], 0, 10**8)),
            ("Decay per step", b.number("optim.gamma", t["optim.gamma"], 0.5, 1.0)),
        ])
        group("Length and mixing", [
            ("Steps", b.integer("train.max_steps", t["train.max_steps"], 0, MAX_STEPS, "use epochs")),
            ("Epochs", b.number("train.epochs", t["train.epochs"], 0.0, 1e6)),
            ("Minimum steps", b.integer("train.min_steps", t["train.min_steps"], 0, MAX_STEPS, "no minimum")),
            ("Mixing", b.choice("train.mixing", [(m, m.replace("_", " ")) for m in MIXING], t["train.mixing"])),
            ("Temperature", b.number("train.temperature", t["train.temperature"], 0.01, 100.0)),
            ("Balancing", b.choice("train.balancing", [(m, BALANCING_LABELS[m]) for m in BALANCINGS],
                                   t["train.balancing"])),
            ("Balancing lr", b.number("train.balancing_lr", t["train.balancing_lr"], 1e-9, 10.0)),
            ("", b.check("train.group_by_length", "Group by length", t["train.group_by_length"])),
        ])
        self.device_combo = b.choice("train.device", [("auto", "Automatic (the GPU if there is one)"),
                                                      ("cpu", "CPU"), ("cuda", "CUDA GPU"),
                                                      ("mps", "Apple GPU (MPS)")], t["train.device"])
        group("Hardware and evaluation", [
            ("Device", self.device_combo),
            ("Precision", b.choice("train.precision", [(p, p) for p in PRECISIONS], t["train.precision"])),
            ("", b.check("train.compile", "Compile (torch.compile)", t["train.compile"])),
            ("Seed", b.integer("train.seed", t["train.seed"], 0, 2**31 - 1)),
            ("Log every", b.integer("train.log_every", t["train.log_every"], 1, 10**6)),
            ("Validate every", b.integer("eval.every", t["eval.every"], 0, 10**8, "end only")),
            ("Early-stop patience", b.integer("eval.patience", t["eval.patience"], 0, 10**6, "off")),
            ("Task patience", b.integer("eval.task_patience", t["eval.task_patience"], 0, 10**6, "off")),
            ("", b.check("eval.keep_best", "Export the best evaluation", t["eval.keep_best"])),
            ("Forgetting alert", forgetting_alert(b, t["eval.forgetting_alert"])),
            ("", b.check("eval.forgetting_pause", "Pause when forgetting", t["eval.forgetting_pause"])),
            ("Checkpoint every", b.integer("checkpoint.every", t["checkpoint.every"], 0, 10**8, "on stop")),
            ("Checkpoint minutes", b.number("checkpoint.minutes", t["checkpoint.minutes"], 0.0, 10**6)),
            ("Skipped steps limit", b.integer("train.skip_limit", t["train.skip_limit"], 0, 10**6, "never stop")),
        ])
        for f in self.binder.fields:     # long choices ("Automatic (the GPU if there is one)") must not widen the tab
            if isinstance(f.widget, QComboBox):
                f.widget.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                f.widget.setMinimumContentsLength(8)
        document.changed.connect(self._on_document_changed)
        self._on_document_changed("")

    def _on_document_changed(self, section: str) -> None:
        self.binder.refresh()
        self._show_relevance()

    def _show_relevance(self) -> None:
        """Grey out what the other settings make moot, saying which setting does."""
        p = self.document.project
        field = {f.key: f.widget for f in self.binder.fields}
        steps = p.train.max_steps > 0
        set_relevant(field["train.epochs"], not steps, "Steps is set, and sets the length.")
        set_relevant(field["train.min_steps"], not steps, "Steps is set, and sets the length.")
        set_relevant(field["train.temperature"], p.train.mixing == "temperature",
                     "only temperature mixing uses it; choose it under Mixing.")
        set_relevant(field["train.balancing_lr"], p.train.balancing == "uncertainty",
                     "only uncertainty balancing learns weights; choose it under Balancing.")
        set_relevant(field["optim.warmup_ratio"], p.optim.warmup_steps == 0,
                     "Warm-up steps is set, and sets the warm-up.")
        set_relevant(field["optim.gamma"], p.optim.scheduler == "exponential",
                     "only the exponential scheduler uses it.")
        set_relevant(field["eval.forgetting_pause"], p.eval.forgetting_alert > 0, "Forgetting alert is off.")

    def set_devices(self, choices: list) -> None:
        """Replace the device list with what was detected (DeviceChoice items)."""
        combo = self.device_combo
        combo.blockSignals(True)
        for i, choice in enumerate(choices):
            if i < combo.count():
                combo.setItemText(i, choice.label)
            item = combo.model().item(i) if hasattr(combo.model(), "item") else None
            if item is not None:
                item.setEnabled(choice.available)
        combo.blockSignals(False)

    def show_mix(self, shares: dict) -> None:
        """The mixing preview: passes per task as bars, and per task its share of the batches and rows seen."""
        self.mix_chart.show_passes({name: s.passes for name, s in shares.items()})
        self.mix_label.setText("; ".join(
            f"{name}: {s.share:.0%} of the batches, about {s.examples:,.0f} rows seen ({s.passes:.1f} passes)"
            for name, s in shares.items()))

    def show_lr_preview(self, curves: dict[str, list[float]] | None, note: str) -> None:
        for name in ("encoder", "heads"):
            values = (curves or {}).get(name, [])
            steps = (curves or {}).get("steps") or range(1, len(values) + 1)    # long plans come sampled
            self.lr_chart.set_data(name, steps, values)
        self.lr_chart.flush()
        self.lr_chart.getPlotItem().enableAutoRange()
        self.plan_label.setText(note)

    @Slot()
    def start_estimate(self) -> None:
        import copy
        import threading

        from qarac_gui.core.estimate import estimate_run
        project = copy.deepcopy(self.document.project)      # edits while it measures do not change what it measures
        self.estimate_button.setEnabled(False)
        self.estimate_label.setStyleSheet("")
        self.estimate_label.setText("Estimating: loading the model and the data, then one pass of each task's "
                                    "widest batch…")
        self.jobs.submit("estimate", lambda: estimate_run(project, lambda event: None, threading.Event()),
                         uses_transformers=True)

    @Slot(str, object)
    def _on_estimate_finished(self, key: str, result: object) -> None:
        self.estimate_button.setEnabled(True)
        if isinstance(result, Failure):
            self.estimate_label.setStyleSheet("color: #b91c1c;")
            self.estimate_label.setText(f"Could not estimate: {result.message}")
            return
        self.estimate_label.setStyleSheet("color: #b45309;" if result.warnings else "")
        self.estimate_label.setText(estimate_words(result))


def forgetting_alert(b, tip: str) -> QWidget:
    box = b.decimal("eval.forgetting_alert", tip, 0.0, 10.0, step=0.05, decimals=2)
    box.setSpecialValueText("off")          # 0: no alert
    return box


def estimate_words(e) -> str:
    from qarac_gui.core.results.history import human_size
    widest = max(e.tasks, key=lambda c: c.activations)
    where = f"the {e.device}'s {human_size(e.available)}" if e.available else f"{e.device} memory"
    text = (f"About {human_size(e.total)} of {where}: weights {human_size(e.weights)}, gradients "
            f"{human_size(e.gradients)}, optimiser {human_size(e.optimizer)}, "
            + (f"task gradients for balancing {human_size(e.balancing)}, " if e.balancing else "") +
            f"activations "
            f"{human_size(widest.activations)} ({widest.task}, {widest.rows} rows of {widest.tokens} tokens). "
            f"An epoch: {_duration(e.epoch_seconds)} ({e.steps_per_epoch:.0f} steps of {e.step_seconds:.3g} s).")
    return " ".join([*(f"Will not fit: {w}." for w in e.warnings), text])


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
