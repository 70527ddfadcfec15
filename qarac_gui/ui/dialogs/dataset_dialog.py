"""Pick a Hub dataset for a task: search, choose config and splits, see the features and the first rows."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.data import hub as hub_data
from qarac_gui.core.model import hub
from qarac_gui.ui.form import ComboBox
from qarac_gui.ui.widgets import row_table, show_details_state, status_label
from qarac_gui.ui.worker import Failure, JobRunner

NO_VALIDATION = "(hold out a share of the training split)"
INSTEAD = ("Use a local data file for this task instead; a dataset downloaded before can still be used by typing its "
           "id in the task's Hub field.")
OFFLINE = f"Offline (HF_HUB_OFFLINE is set): Hub datasets cannot be searched or looked up. {INSTEAD}"
NO_NETWORK = f"No network: the Hub cannot be reached, so its datasets cannot be searched or looked up. {INSTEAD}"


class DatasetDialog(QDialog):
    """`chosen` carries the task's data fields: hub, hub_config, train_split, validation_split."""

    chosen = Signal(dict)

    def __init__(self, parent: QWidget | None = None, endpoint: str | None = None, page_size: int = 20) -> None:
        super().__init__(parent)
        self.setObjectName("dataset_dialog")
        self.setWindowTitle("Choose a dataset on the Hugging Face Hub")
        self.resize(980, 620)
        self.endpoint, self.page_size = endpoint, page_size
        self.search: hub_data.DatasetSearch | None = None
        self.hits: list[hub_data.DatasetHit] = []
        self.details: hub_data.DatasetDetails | None = None
        self.jobs = JobRunner(self)
        self.jobs.finished.connect(self._on_jobs_finished)
        self.offline = False
        layout = QVBoxLayout(self)
        self.offline_label = QLabel("")
        self.offline_label.setObjectName("dataset_offline")
        self.offline_label.setStyleSheet("color: #c08000;")
        self.offline_label.setWordWrap(True)
        self.offline_label.setVisible(False)
        layout.addWidget(self.offline_label)
        bar = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setObjectName("dataset_query")
        self.query.setPlaceholderText("search datasets, or type an id and press Details")
        self.query.returnPressed.connect(self.start_search)
        bar.addWidget(self.query, 1)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.start_search)
        bar.addWidget(self.search_button)
        self.details_button = QPushButton("Details")
        self.details_button.setObjectName("dataset_details")
        self.details_button.clicked.connect(lambda: self.show_details(self.query.text().strip()))
        bar.addWidget(self.details_button)
        self.query.textChanged.connect(self._update_details_button)
        self._update_details_button()
        layout.addLayout(bar)
        split = QSplitter()
        self.table = row_table("dataset_results", ("Dataset", "Downloads", "Likes", "Updated"))
        self.table.itemSelectionChanged.connect(self._on_table_selection_changed)
        split.addWidget(self.table)
        right = QWidget()
        rl = QVBoxLayout(right)
        form = QFormLayout()
        self.id_label = QLabel("–")
        self.config_combo = ComboBox()
        self.config_combo.activated.connect(lambda _: self.show_details(self.id_label.text(),
                                                                        self.config_combo.currentText()))
        self.train_combo = ComboBox()
        self.valid_combo = ComboBox()
        self.features = QLabel("")
        self.features.setObjectName("dataset_features")
        self.features.setWordWrap(True)
        form.addRow("Dataset", self.id_label)
        form.addRow("Config", self.config_combo)
        form.addRow("Train split", self.train_combo)
        form.addRow("Validation split", self.valid_combo)
        form.addRow("Columns", self.features)
        rl.addLayout(form)
        self.rows = QTableWidget()
        self.rows.setObjectName("dataset_rows")
        self.rows.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        rl.addWidget(self.rows, 1)
        split.addWidget(right)
        split.setSizes([420, 560])
        layout.addWidget(split, 1)
        self.status = status_label("dataset_status")
        layout.addWidget(self.status)
        buttons = QDialogButtonBox()
        self.use_button = buttons.addButton("Use for this task", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._on_use_clicked)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel).clicked.connect(self.reject)
        layout.addWidget(buttons)
        self.jobs.submit("offline", hub.hub_offline)     # imports huggingface_hub: not on the GUI thread

    def start_search(self) -> None:
        if self.offline:
            return
        query, endpoint, size = self.query.text().strip(), self.endpoint, self.page_size
        self.status.setText("Searching…")
        hub.forget_hub_failures()           # the user asks again: ask the Hub again, even right after a failure

        def search():
            s = hub_data.DatasetSearch(query, page_size=size, endpoint=endpoint)
            return s, s.next_page()
        self.jobs.submit("search", search)

    def _on_table_selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.show_details(self.hits[rows[0].row()].id)

    def show_details(self, repo_id: str, config: str | None = None) -> None:
        if not repo_id or repo_id == "–" or self.offline:
            return
        self.use_button.setEnabled(False)
        self.status.setText(f"Reading {repo_id}…")
        self.jobs.submit("details", lambda: hub_data.dataset_details(repo_id, config))

    def _update_details_button(self) -> None:
        show_details_state(self.details_button, self.query.text(), self.offline, "imdb")

    def _go_offline(self, message: str) -> None:
        self.offline = True
        self.offline_label.setText(message)
        self.offline_label.setVisible(True)
        for widget in (self.query, self.search_button):
            widget.setEnabled(False)
        self._update_details_button()

    @Slot(str, object)
    def _on_jobs_finished(self, key: str, result) -> None:
        if key == "offline":
            if result is True:
                self._go_offline(OFFLINE)
                self.status.setText("")
            return
        if isinstance(result, Failure):
            if "cannot reach the Hub" in result.message:
                self._go_offline(NO_NETWORK)
            self.status.setText(f"<span style='color:#d04040'>{result.message}</span>")
            return
        if key == "search":
            self.search, self.hits = result
            self.table.setRowCount(len(self.hits))
            for row, h in enumerate(self.hits):
                for col, value in enumerate((h.id, f"{h.downloads:,}", f"{h.likes:,}", h.last_modified)):
                    self.table.setItem(row, col, QTableWidgetItem(value))
            self.table.resizeColumnsToContents()
            self.status.setText(f"{len(self.hits)} dataset(s)")
        elif key == "details":
            self._show_details(result)

    def _show_details(self, d: hub_data.DatasetDetails) -> None:
        self.details = d
        self.id_label.setText(d.id)
        self.config_combo.clear()
        self.config_combo.addItems(d.configs)
        self.config_combo.setCurrentText(d.config)
        self.train_combo.clear()
        self.train_combo.addItems(d.splits)
        self.train_combo.setCurrentText("train" if "train" in d.splits else d.splits[0])
        self.valid_combo.clear()
        self.valid_combo.addItem(NO_VALIDATION)
        others = [s for s in d.splits if s != self.train_combo.currentText()]
        self.valid_combo.addItems(others)
        preferred = next((s for s in ("validation", "valid", "dev", "test") if s in others), None)
        if preferred:
            self.valid_combo.setCurrentText(preferred)
        self.features.setText(", ".join(f"{k} ({v})" for k, v in d.features.items()))
        columns = list(d.features)
        self.rows.setColumnCount(len(columns))
        self.rows.setHorizontalHeaderLabels(columns)
        self.rows.setRowCount(len(d.rows))
        for r, row in enumerate(d.rows):
            for c, name in enumerate(columns):
                self.rows.setItem(r, c, QTableWidgetItem(str(row.get(name, ""))[:200]))
        self.rows.resizeColumnsToContents()
        self.status.setText(f"{d.id}: {len(d.configs)} config(s), splits {', '.join(d.splits)}")
        self.use_button.setEnabled(True)

    def choice(self) -> dict:
        d = self.details
        valid = self.valid_combo.currentText()
        return {"hub": d.id, "hub_config": "" if d.config == "default" else d.config,
                "train_split": self.train_combo.currentText(),
                "validation_split": "" if valid == NO_VALIDATION else valid}

    def _on_use_clicked(self) -> None:
        if self.details is not None:
            self.chosen.emit(self.choice())
            self.accept()
