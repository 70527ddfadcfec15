"""A backbone's LoRA adapter settings in its form (adapter, scope, rank, alpha, dropout, target layers), and the
words for what a run trains of it: its weights or its adapters, frozen layers, the head-only warm-up."""

from __future__ import annotations

import importlib.util

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel

from qarac_gui.core.model.adapters import PIP
from qarac_gui.core.model.info import TrainableCount
from qarac_gui.core.project.config import BackboneConfig, Project
from qarac_gui.core.project.limits import MAX_HIDDEN
from qarac_gui.ui.form import Binder, set_relevant

TIPS = {
    "adapter": "LoRA trains small low-rank adapters beside the model's layers and keeps the model's own weights as "
               "they are: a small fraction of the parameters trains, so training needs less memory and each task "
               "can keep an adapter of its own. None trains the model's weights themselves (full fine-tuning).",
    "adapter_scope": "Shared: one adapter that every task reading this backbone trains. Per task: each task trains "
                     "an adapter of its own on the same frozen model, switched in as the task's batches run, so the "
                     "tasks cannot pull each other's weights apart.",
    "lora_rank": "The adapters' rank r: each adapted layer learns two thin matrices of r columns. Higher learns "
                 "more and trains more parameters; 4 to 16 is usual.",
    "lora_alpha": "The adapters' output is scaled by alpha / rank; twice the rank is a common choice.",
    "lora_dropout": "Dropout on what goes into the adapters while training.",
    "lora_targets": "The layers that get adapters, by the last part of their name, separated by commas: e.g. "
                    "query, value or query, key, value, dense. Empty: peft's choice for the architecture (query and "
                    "value for BERT-like models); all-linear: every linear layer.",
}
ADAPTER_CHOICES = [("none", "none: train the model's own weights"), ("lora", "LoRA: train small adapters (peft)")]
SCOPE_CHOICES = [("shared", "one adapter shared by the tasks"), ("per_task", "one adapter per task")]
NO_ADAPTER = "the adapter is none; choose LoRA to use it"


def peft_missing() -> bool:
    return importlib.util.find_spec("peft") is None


class AdapterFields:
    """The adapter rows of a backbone's form, bound through the binder (every edit goes through the document)."""

    def __init__(self, binder: Binder, form: QFormLayout) -> None:
        self.form = form
        self.adapter: QComboBox = binder.choice("adapter", ADAPTER_CHOICES, TIPS["adapter"])
        # Two lines of their own, unwrapped: a wrapped label in a form takes odd heights, and the command stays whole
        self.peft_note = QLabel("LoRA needs the peft library, which is not installed:\n"
                                "pip install peft   (or: pip install 'qarac-gui[peft]')")
        self.peft_note.setToolTip(PIP)
        self.peft_note.setObjectName("peft_note")
        self.peft_note.setStyleSheet("color: #b06000;")
        self.peft_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)   # to copy the command
        form.addRow("Adapters", self.adapter)
        form.addRow("", self.peft_note)
        self.scope = binder.choice("adapter_scope", SCOPE_CHOICES, TIPS["adapter_scope"])
        form.addRow("Adapter for", self.scope)
        self.rank = binder.integer("lora_rank", TIPS["lora_rank"], 1, MAX_HIDDEN)
        form.addRow("LoRA rank", self.rank)
        self.alpha = binder.decimal("lora_alpha", TIPS["lora_alpha"], 0.01, 1e5, step=1.0, decimals=2)
        form.addRow("LoRA alpha", self.alpha)
        self.dropout = binder.decimal("lora_dropout", TIPS["lora_dropout"], 0.0, 0.95, step=0.05, decimals=2)
        form.addRow("LoRA dropout", self.dropout)
        self.targets = binder.text_list("lora_targets", TIPS["lora_targets"], "peft's default for the architecture")
        form.addRow("Target layers", self.targets)

    def refresh(self, bb: BackboneConfig | None) -> None:
        missing = peft_missing()
        self.form.setRowVisible(self.peft_note, missing)
        # Offered only with peft installed; a project that already asks for it still shows its choice
        self.adapter.model().item(1).setEnabled(not missing or (bb is not None and bb.adapter == "lora"))
        lora = bb is not None and bb.adapter == "lora"
        for widget in (self.scope, self.rank, self.alpha, self.dropout, self.targets):
            set_relevant(widget, lora, NO_ADAPTER)

    def show_adapted(self, count: TrainableCount | None) -> None:
        """The layers the default chose, once counted: the empty field says which they are."""
        default = "peft's default for the architecture"
        if count is not None and count.adapted and not self.targets.text():
            default += f" (here: {', '.join(count.adapted)})"
        self.targets.setPlaceholderText(default)


def count_words(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def trains_words(bb: BackboneConfig, count: TrainableCount, layers: int) -> str:
    """What a run trains of the backbone, for the summary's Trains column."""
    if bb.adapter == "lora":
        where = ", ".join(count.adapted) or "no layer"
        text = f"LoRA{' per task' if bb.adapter_scope == 'per_task' else ''}, rank {bb.lora_rank}: {where}"
        if bb.freeze_layers:
            text += f"; bottom {min(bb.freeze_layers, layers)} layers frozen"
        return text
    frozen = min(bb.freeze_layers, layers)
    return f"{layers - frozen} of {layers} layers" + (", embeddings frozen" if bb.freeze_embeddings else "")


def totals_words(project: Project, trainable: int, total: int, heads: int, complete: bool) -> str:
    """The line under the summary: trainable against total, and what the head-only warm-up trains."""
    if not total:
        return ""
    share = 100 * trainable / total
    percent = f"{share:.1f}" if share >= 1 else f"{share:.2f}"
    text = f"Trains {count_words(trainable)} of {count_words(total)} parameters ({percent} %)"
    if not complete:
        text += " (of the parts counted so far)"
    warmup = project.optim.head_warmup_steps
    if warmup:
        text += f"; during the first {warmup} steps (head warm-up) only the heads train: {count_words(heads)}"
    return text + "."
