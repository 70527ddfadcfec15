"""The backbones: their list, and for the selected one where its model comes from, what it is, which head is removed,
and its options; a drawing of how the tasks use them."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.model import code_trust
from qarac_gui.core.model.info import ModelInfo, TrainableCount
from qarac_gui.core.project.config import BACKBONE_POOLINGS, BACKBONE_ROLES
from qarac_gui.ui.dialogs import code_consent
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.form import Binder
from qarac_gui.ui.panels.adapter_fields import AdapterFields, totals_words, trains_words
from qarac_gui.ui.panels.backbone_graph import BackboneGraph
from qarac_gui.ui.panels.backbones_list import BackbonesList

TIPS = {
    "model": "A Hugging Face Hub id (e.g. roberta-base), a local model folder, or package:<module>. "
             "Its task head, if any, is removed: your heads replace it.",
    "revision": "Hub branch, tag or commit to pin; empty for the default branch.",
    "trust_remote_code": "Run Python code shipped in the model's repository. Only for repositories you trust.",
    "allow_pickle": "Allow pytorch_model.bin weights when a model has no safetensors. Pickle files can run code "
                    "when loaded: only for sources you trust.",
    "freeze_embeddings": "Keep the token embeddings fixed. Protects what the model learnt about words and saves "
                         "memory; useful with little data.",
    "freeze_layers": "Keep the bottom N transformer layers fixed. Lower layers hold general language knowledge; "
                     "freezing them fights forgetting and speeds up training.",
    "role": "An encoder reads text into vectors (every head but decode reads one). A decoder is the same kind of "
            "checkpoint loaded to write text: decode heads write their target with it.",
    "pooling": "How this encoder makes one vector per text for vector and decode heads (the other heads pool on "
               "their own): the mean of the tokens, the first token, or learnt attention over the tokens. Every "
               "task that reads through this encoder shares it.",
    "pooling_rank": "Attention pooling: the width of its two learnt projections (the hidden size when 0). Smaller "
                    "means fewer parameters to learn.",
}
ROLE_WORDS = {"encoder": "encoder: reads text into vectors", "decoder": "decoder: writes text (for decode heads)"}
POOLING_WORDS = {"mean": "mean of the tokens", "cls": "first token (CLS)",
                 "attention": "attention over the tokens (learnt)"}
ROLES = [(r, ROLE_WORDS.get(r, r)) for r in BACKBONE_ROLES]
POOLINGS = [(p, POOLING_WORDS.get(p, p)) for p in BACKBONE_POOLINGS]


def _count(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


# what a newcomer sees first: what to type and which buttons find a model
NO_MODEL = ("No model yet: type a Hub id (e.g. roberta-base) or a folder and press Load; Hub… searches the Hub and "
            "Folder… picks a folder on this computer.")


class ModelPanel(QWidget):
    """Choose and inspect the backbones: the shared encoder, or several encoders and decoders."""

    load_requested = Signal()
    hub_requested = Signal()
    backbone_selected = Signal(str)

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.backbones = BackbonesList(document)
        self.backbone = self.backbones.current()
        self.binder = Binder(document, f"backbones.{self.backbone}")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setObjectName("model_scroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        layout = QVBoxLayout(body)
        self.backbones.selected.connect(self._on_backbones_selected)
        layout.addWidget(self.backbones)

        self.source = source = QGroupBox("Base model")
        form = QFormLayout(source)
        row = QHBoxLayout()
        self.model_edit = self.binder.text("model", TIPS["model"], "e.g. roberta-base")
        row.addWidget(self.model_edit, 1)
        self.browse_button = QPushButton("Folder…")
        self.browse_button.setToolTip("Choose a local model folder (it holds config.json and the weights)")
        self.browse_button.clicked.connect(self._on_browse_clicked)
        row.addWidget(self.browse_button)
        self.hub_button = QPushButton("Hub…")
        self.hub_button.setObjectName("hub_button")
        self.hub_button.setToolTip("Search the Hugging Face Hub, see a model's details, download it")
        self.hub_button.clicked.connect(self.hub_requested)
        row.addWidget(self.hub_button)
        self.recent_button = QToolButton()
        self.recent_button.setText("Recent")
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        row.addWidget(self.recent_button)
        self.load_button = QPushButton("Load")
        self.load_button.setToolTip("Read the model to show what it is (runs in the background)")
        self.load_button.clicked.connect(self.load_requested)
        row.addWidget(self.load_button)
        form.addRow("Model", row)
        form.addRow("Revision", self.binder.text("revision", TIPS["revision"], "default branch"))
        self.trust_box = self.binder.check("trust_remote_code", "Trust remote code", TIPS["trust_remote_code"])
        self.trust_box.toggled.connect(self._on_trust_toggled)
        form.addRow("", self.trust_box)
        form.addRow("", self.binder.check("allow_pickle", "Allow pickle weights", TIPS["allow_pickle"]))
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.status = QLabel(NO_MODEL)
        self.status.setWordWrap(True)
        self.status.setObjectName("model_status")
        form.addRow("", self.progress)
        form.addRow("", self.status)
        layout.addWidget(source)

        facts = QGroupBox("What it is")
        self.facts = QFormLayout(facts)
        self.fact_labels = {}
        for key, title in (("architecture", "Architecture"), ("parameters", "Parameters"),
                           ("hidden_size", "Hidden size"), ("layers", "Layers"), ("vocab_size", "Vocabulary"),
                           ("max_positions", "Max positions"), ("removed", "Head removed")):
            label = QLabel("–")
            label.setObjectName(f"fact_{key}")
            label.setWordWrap(True)
            self.fact_labels[key] = label
            self.facts.addRow(title, label)
        layout.addWidget(facts)

        self.options = freeze = QGroupBox("Shared encoder")
        ff = self.options_form = QFormLayout(freeze)
        self.role = self.binder.choice("role", ROLES, TIPS["role"])
        ff.addRow("Role", self.role)
        self.pooling = self.binder.choice("pooling", POOLINGS, TIPS["pooling"])
        ff.addRow("Sentence vector", self.pooling)
        self.pooling_rank = self.binder.integer("pooling_rank", TIPS["pooling_rank"], 0, 100_000,
                                                special="hidden size")
        ff.addRow("Attention width", self.pooling_rank)
        ff.addRow("", self.binder.check("freeze_embeddings", "Freeze embeddings", TIPS["freeze_embeddings"]))
        ff.addRow("Freeze bottom layers", self.binder.integer("freeze_layers", TIPS["freeze_layers"], 0, 1000,
                                                               special="none"))
        self.adapter_fields = AdapterFields(self.binder, ff)
        self.summary = QTreeWidget()
        self.summary.setObjectName("model_summary")
        self.summary.setHeaderLabels(["Part", "Trains", "Parameters"])
        self.summary.setRootIsDecorated(False)
        # The part's name gives way (elided, whole in its tooltip) so that what trains and the counts stay in view
        header = self.summary.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        ff.addRow(self.summary)
        self.totals = QLabel("")
        self.totals.setObjectName("trainable_totals")
        self.totals.setWordWrap(True)
        ff.addRow(self.totals)
        layout.addWidget(freeze)
        self.graph_box = QGroupBox("How the tasks use the backbones")
        gl = QVBoxLayout(self.graph_box)
        self.graph = BackboneGraph(document)
        self.graph.set_selected(self.backbone)
        gl.addWidget(self.graph)
        layout.addWidget(self.graph_box)
        layout.addStretch(1)
        self.body_layout = layout
        self.info: ModelInfo | None = None
        self.head_params: dict[str, int] = {}
        self.trainable: dict[str, tuple[str, TrainableCount | str]] = {}    # backbone -> (settings counted, count)
        document.changed.connect(self._on_document_changed)
        self.refresh()

    def refresh(self) -> None:
        project = self.document.project
        self.backbones.refresh()
        if self.backbones.current() != self.backbone:       # removed, renamed or undone
            self._on_backbones_selected(self.backbones.current())
            return
        bb = project.backbones.get(self.backbone)
        if bb is not None:
            self.binder.refresh()
        self.adapter_fields.refresh(bb)
        several = len(project.backbones) > 1
        # One encoder read by ordinary heads is the usual project: its role and pooling do not matter there.
        plain = not several and (bb is None or bb.role == "encoder") and not any(
            getattr(HEAD_KINDS.get(t.head.kind), "takes_inputs", False) for t in project.tasks)
        encoder = bb is not None and bb.role == "encoder"
        self.backbones.set_compact(plain)
        ff = self.options_form
        ff.setRowVisible(self.role, not plain)
        ff.setRowVisible(self.pooling, not plain and encoder)
        ff.setRowVisible(self.pooling_rank, not plain and encoder and bb.pooling == "attention")
        # With several backbones the drawing is the overview, right under their list; otherwise it closes the tab.
        lay, after = self.body_layout, self.backbones if several else self.options
        if lay.indexOf(self.graph_box) != lay.indexOf(after) + 1:
            lay.removeWidget(self.graph_box)
            lay.insertWidget(lay.indexOf(after) + 1, self.graph_box)
        self.source.setTitle(f"Base model of {self.backbone}" if several else "Base model")
        self.options.setTitle(f"Backbone {self.backbone}" if several else "Shared encoder")
        if self.info is not None and (bb is None or self.info.spec != bb.model):
            self._clear_facts()             # the facts of another model: the new one's come once it is read
            self.status.setText(NO_MODEL)
        self._show_summary()

    def _on_backbones_selected(self, name: str) -> None:
        self.backbone = name
        self.binder.prefix = f"backbones.{name}"
        self.graph.set_selected(name)
        self.refresh()
        self.backbone_selected.emit(name)

    def _clear_facts(self) -> None:
        self.info = None
        for label in self.fact_labels.values():
            label.setText("–")

    def _on_document_changed(self, section: str) -> None:
        if section in ("", "tasks") or section.startswith(("backbones", "tasks.")):
            self.refresh()

    def set_busy(self, busy: bool, message: str = "") -> None:
        self.progress.setVisible(busy)
        self.load_button.setEnabled(not busy)
        if message:
            self.status.setText(message)

    def show_info(self, info: ModelInfo) -> None:
        self.info = info
        values = {"architecture": f"{info.architecture} ({info.model_type})", "parameters": _count(info.parameters),
                  "hidden_size": str(info.hidden_size), "layers": str(info.layers),
                  "vocab_size": f"{info.vocab_size:,}", "max_positions": str(info.max_positions or "–"),
                  "removed": info.removed or "none (a bare encoder)"}
        for key, text in values.items():
            self.fact_labels[key].setText(text)
        self.set_busy(False, f"Loaded from {info.source}")
        self._show_summary()

    def show_error(self, message: str) -> None:
        self._clear_facts()
        self.set_busy(False, f"<span style='color:#d04040'>{message}</span>")
        self._show_summary()

    def show_head_params(self, counts: dict[str, int]) -> None:
        self.head_params = counts
        self._show_summary()

    def show_trainable(self, backbone: str, count: TrainableCount | str, settings: str) -> None:
        """What a run trains of a backbone, counted for these settings (a message when it could not be)."""
        self.trainable[backbone] = (settings, count)
        self._show_summary()

    def _count_of(self, name: str) -> TrainableCount | None:
        """The count of the backbone's current settings; None while it is being made."""
        bb = self.document.project.backbones.get(name)
        settings, count = self.trainable.get(name, ("", None))
        return count if isinstance(count, TrainableCount) and bb is not None and settings == repr(bb) else None

    def set_recent(self, models: list[str]) -> None:
        from PySide6.QtWidgets import QMenu
        menu = QMenu(self.recent_button)
        for spec in models:
            menu.addAction(spec, lambda s=spec: self._choose(s))
        self.recent_button.setMenu(menu)
        self.recent_button.setEnabled(bool(models))

    def choose(self, spec: str) -> None:
        self._choose(spec)

    def _choose(self, spec: str) -> None:
        self.document.set_value(f"backbones.{self.backbone}.model", spec, "Model")
        self.load_requested.emit()

    def _on_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self._choose(folder)

    def _on_trust_toggled(self, on: bool) -> None:
        if not on:
            return
        # Ticking the box is the user's own request: ask now (again, even if a "no" was remembered).
        code_consent.confirm(self, self.document.project, [self.backbone], again=True)
        source = code_consent.source_of(self.document.project, self.backbone)
        if source is not None and not code_trust.policy().answer(source):
            self.document.set_value(f"backbones.{self.backbone}.trust_remote_code", False, "Trust remote code")
            self.binder.refresh()
        elif source is not None:
            self.load_requested.emit()        # a new answer for the same model: its facts change

    def _show_summary(self) -> None:
        self.summary.clear()
        project = self.document.project
        several = len(project.backbones) > 1
        shown = project.backbones.get(self.backbone)
        trainable = total = heads = 0
        complete = True
        for name, bb in project.backbones.items():
            if not several and self.info is None:
                continue
            count = self._count_of(name)
            if self.info is not None and shown is not None and (bb.model, bb.role) == (self.info.spec, shown.role):
                frozen = min(bb.freeze_layers, self.info.layers)
                trains = f"{self.info.layers - frozen} of {self.info.layers} layers"
                params = _count(self.info.parameters)
                part = f"{bb.role.capitalize()} ({self.info.model_type})"
                if count is not None:
                    trains = trains_words(bb, count, self.info.layers)
                    params = f"{_count(count.trainable)} of {_count(count.total)}"
                    trainable, total = trainable + count.trainable, total + count.total
                else:
                    complete = False
                if bb.freeze_embeddings:
                    trains += ", embeddings frozen" if "embeddings" not in trains else ""
            else:
                trains = f"all but the bottom {bb.freeze_layers} layers" if bb.freeze_layers else "all layers"
                trains += "; LoRA adapters" if bb.adapter == "lora" else ""
                params, part = "select it to read", bb.role.capitalize()
                complete = False
                if bb.freeze_embeddings:
                    trains += ", embeddings frozen"
            item = QTreeWidgetItem(self.summary, [f"{part}: {name}" if several else part, trains, params])
            if count is not None:
                item.setToolTip(2, f"{params.replace(' of ', ' of its ')} parameters train")
        for task in project.tasks:
            kind = HEAD_KINDS.get(task.head.kind)
            params = self.head_params.get(task.name)
            if kind is not None and kind.takes_inputs:
                size = "none of its own"          # its backbones and their poolers are the whole model
            else:
                size = _count(params) if params is not None else "load the model"
                complete = complete and params is not None
                heads += params or 0
            item = QTreeWidgetItem(self.summary, [f"Head: {task.name} — {kind.title if kind else task.head.kind}",
                                                  "yes", size])
            item.setToolTip(0, item.text(0))
        self.totals.setText(totals_words(project, trainable + heads, total + heads, heads, complete)
                            if total else "")
        self.adapter_fields.show_adapted(self._count_of(self.backbone))
        rows = max(3, min(self.summary.topLevelItemCount(), 12))        # as tall as its rows, within bounds
        row = self.summary.sizeHintForRow(0) if self.summary.topLevelItemCount() else 18
        self.summary.setFixedHeight(self.summary.header().sizeHint().height() + rows * max(row, 16)
                                    + 2 * self.summary.frameWidth() + 4)
