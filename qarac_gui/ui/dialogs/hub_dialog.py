"""Find a base model on the Hugging Face Hub, see what it is, and download it into the shared HF cache."""

from __future__ import annotations

import threading

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.model import hub
from qarac_gui.ui.form import ComboBox
from qarac_gui.ui.widgets import row_table, show_details_state, status_label
from qarac_gui.ui.worker import Failure, JobRunner

TASKS = [("fill-mask", "Encoders (fill-mask)"), ("sentence-similarity", "Sentence embeddings"),
         ("text-classification", "Text classifiers"), ("token-classification", "Token classifiers"),
         ("question-answering", "Question answering"), (None, "Any task")]
SORTS = [("downloads", "Most downloads"), ("likes", "Most likes"), ("updated", "Recently updated")]
COLUMNS = ("Model", "Downloads", "Likes", "Updated", "License", "Parameters")


def repo_id_of(snapshot: str) -> str:
    """acme/bert from .../models--acme--bert/snapshots/<sha>."""
    from pathlib import Path
    return Path(snapshot).parent.parent.name.removeprefix("models--").replace("--", "/")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class HubDialog(QDialog):
    """Search, inspect, download; `chosen` carries the Hub id once its files are in the cache."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None, endpoint: str | None = None, token: str | None = None,
                 cache_dir: str | None = None, page_size: int = 20) -> None:
        super().__init__(parent)
        self.setObjectName("hub_dialog")
        self.setWindowTitle("Find a model on the Hugging Face Hub")
        self.resize(980, 620)
        self.endpoint, self.token, self.cache_dir, self.page_size = endpoint, token, cache_dir, page_size
        self.jobs = JobRunner(self)
        self.jobs.finished.connect(self._on_jobs_finished)
        self.search: hub.ModelSearch | None = None
        self.hits: list[hub.ModelHit] = []
        self.details: hub.ModelDetails | None = None
        self.offline = False
        self.offline_choice = ""
        self._cancel = threading.Event()
        self._progress: hub.DownloadProgress | None = None
        layout = QVBoxLayout(self)
        self.offline_label = QLabel("")
        self.offline_label.setObjectName("offline_label")
        self.offline_label.setStyleSheet("color: #c08000;")
        self.offline_label.setVisible(False)
        layout.addWidget(self.offline_label)
        login = QHBoxLayout()
        self.user_label = QLabel("Not logged in: public models only.")
        self.user_label.setObjectName("hub_user")
        login.addWidget(self.user_label, 1)
        self.token_edit = QLineEdit()
        self.token_edit.setObjectName("hub_token")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("access token for private and gated models")
        self.token_edit.setToolTip("Kept only in huggingface_hub's own token store (shared with other HF tools), "
                                   "never in project files, logs or exports")
        self.token_edit.setMinimumWidth(280)
        login.addWidget(self.token_edit)
        self.login_button = QPushButton("Log in")
        self.login_button.setObjectName("hub_login")
        self.login_button.clicked.connect(self._on_login_clicked)
        login.addWidget(self.login_button)
        layout.addLayout(login)
        bar = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setObjectName("hub_query")
        self.query.setPlaceholderText("search models, e.g. roberta; or type any id and press Details")
        self.query.returnPressed.connect(self.start_search)
        bar.addWidget(self.query, 1)
        self.task = ComboBox()
        for value, label in TASKS:
            self.task.addItem(label, value)
        self.language = QLineEdit()
        self.language.setPlaceholderText("language, e.g. en")
        self.language.setMaximumWidth(130)
        self.transformers_only = QCheckBox("transformers only")
        self.transformers_only.setChecked(True)
        self.sort = ComboBox()
        for value, label in SORTS:
            self.sort.addItem(label, value)
        self.search_button = QPushButton("Search")
        self.search_button.setObjectName("hub_search")
        self.search_button.clicked.connect(self.start_search)
        self.details_button = QPushButton("Details")
        self.details_button.setObjectName("hub_details")
        self.details_button.clicked.connect(lambda: self.show_details(self.query.text().strip()))
        self.query.textChanged.connect(self._update_details_button)
        self._update_details_button()
        for w in (self.task, self.language, self.transformers_only, self.sort, self.search_button,
                  self.details_button):
            bar.addWidget(w)
        layout.addLayout(bar)
        split = QSplitter()
        self.table = row_table("hub_results", COLUMNS)
        self.table.itemSelectionChanged.connect(self._on_table_selection_changed)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.table, 1)
        self.more_button = QPushButton("More results")
        self.more_button.setObjectName("hub_more")
        self.more_button.clicked.connect(self.more)
        self.more_button.setEnabled(False)
        ll.addWidget(self.more_button)
        split.addWidget(left)
        right = QWidget()
        form = QFormLayout(right)
        self.facts = {}
        for key, title in (("id", "Model"), ("architecture", "Architecture"), ("removed", "Head removed"),
                           ("size", "Download"), ("access", "Access"), ("license", "License"), ("files", "Files")):
            label = QLabel("–")
            label.setWordWrap(True)
            label.setObjectName(f"hub_{key}")
            self.facts[key] = label
            form.addRow(title, label)
        self.allow_pickle = QCheckBox("Allow pickle weights (only for sources you trust)")
        form.addRow("", self.allow_pickle)
        self.download_button = QPushButton("Download and use")
        self.download_button.setObjectName("hub_download")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setObjectName("hub_cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        row = QHBoxLayout()
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setObjectName("hub_progress")
        self.progress.setVisible(False)
        form.addRow(self.progress)
        split.addWidget(right)
        split.setSizes([600, 380])
        layout.addWidget(split, 1)
        self.status = status_label("hub_status")
        layout.addWidget(self.status)
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._on_timer)
        self.jobs.submit("offline", hub.hub_offline)

    def _on_login_clicked(self) -> None:
        token = self.token_edit.text()
        self.token_edit.clear()                 # the token leaves the widget at once; only the store keeps it
        self.login_button.setEnabled(False)
        self.jobs.submit("login", lambda: hub.log_in(token))

    # --- search -----------------------------------------------------------------------------------------------
    def start_search(self) -> None:
        query, task, sort = self.query.text().strip(), self.task.currentData(), self.sort.currentData()
        language = self.language.text().strip() or None
        library = "transformers" if self.transformers_only.isChecked() else None
        endpoint, token, size = self.endpoint, self.token, self.page_size
        self.status.setText("Searching…")
        self.search_button.setEnabled(False)
        hub.forget_hub_failures()           # the user asks again: ask the Hub again, even right after a failure

        def search():
            s = hub.ModelSearch(query, pipeline_tag=task, library=library, language=language, sort=sort,
                                page_size=size, endpoint=endpoint, token=token)
            return s, s.next_page()
        self.jobs.submit("search", search)

    def more(self) -> None:
        if self.search is not None:
            search = self.search
            self.more_button.setEnabled(False)
            self.jobs.submit("more", lambda: (search, search.next_page()))

    def _show_hits(self, hits: list[hub.ModelHit], append: bool) -> None:
        if not append:
            self.hits = []
            self.table.setRowCount(0)
        for h in hits:
            row = self.table.rowCount()
            self.table.insertRow(row)
            values = (h.id + (" (gated)" if h.gated else ""), f"{h.downloads:,}", f"{h.likes:,}", h.last_modified,
                      h.license, f"{h.parameters / 1e6:.1f} M" if h.parameters else "")
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(value))
            self.hits.append(h)
        self.table.resizeColumnsToContents()
        self.more_button.setEnabled(self.search is not None and not self.search.exhausted)
        self.status.setText(f"{len(self.hits)} model(s) shown" + ("" if self.search is None or self.search.exhausted
                                                                  else "; more available"))

    def _on_table_selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        if self.offline:                        # no details without the Hub; the cached copy can be used as is
            self.offline_choice = self.hits[rows[0].row()].id
            self.facts["id"].setText(self.offline_choice)
            self.download_button.setEnabled(True)
            return
        self.show_details(self.hits[rows[0].row()].id)

    # --- details and download ---------------------------------------------------------------------------------
    def show_details(self, repo_id: str) -> None:
        if not repo_id:
            return
        endpoint, token, pickle = self.endpoint, self.token, self.allow_pickle.isChecked()
        self.facts["id"].setText(repo_id)
        self.download_button.setEnabled(False)
        self.jobs.submit("details", lambda: hub.model_details(repo_id, endpoint=endpoint, token=token,
                                                              allow_pickle=pickle))

    def _show_details(self, d: hub.ModelDetails) -> None:
        self.details = d
        access = "gated: you need to request access on the Hub" if d.gated else "private" if d.private else "public"
        values = {"id": d.id, "architecture": f"{d.architecture} ({d.model_type})" if d.architecture else "unknown",
                  "removed": d.removed_head or "none (a bare encoder)", "size": _size(d.download_size),
                  "access": access, "license": d.license or "not stated",
                  "files": ", ".join(sorted(d.files)[:12]) + (" …" if len(d.files) > 12 else "")}
        if not d.has_safetensors:
            values["size"] += " — only pickle weights: allow them to download"
        for key, text in values.items():
            self.facts[key].setText(text)
        self.download_button.setEnabled(True)

    def start_download(self) -> None:
        if self.details is None and not self.offline_choice:
            return
        repo_id = self.offline_choice if self.offline else self.details.id
        endpoint, token = self.endpoint, self.token
        pickle, cache_dir, cancel = self.allow_pickle.isChecked(), self.cache_dir, self._cancel
        cancel.clear()
        hub.forget_hub_failures()
        self._progress = hub.DownloadProgress(total=self.details.download_size if self.details else 0)

        def track(state: hub.DownloadProgress) -> None:
            self._progress = state           # the timer reads it; an attribute swap needs no lock
        self.download_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self._timer.start()
        self.status.setText(f"Downloading {repo_id}…")
        self.jobs.submit("download", lambda: hub.download_model(
            repo_id, allow_pickle=pickle, progress=track, cancel=cancel, endpoint=endpoint, token=token,
            cache_dir=cache_dir))

    def _update_details_button(self) -> None:
        show_details_state(self.details_button, self.query.text(), self.offline, "roberta-base",
                           "A model already in the cache can still be used: select it in the list")

    def _go_offline(self, message: str) -> None:
        self.offline_label.setText(message)
        self.offline_label.setVisible(True)
        self.offline = True
        self.search_button.setEnabled(False)
        for widget in (self.login_button, self.token_edit):     # a login checks the token with the Hub
            widget.setEnabled(False)
            widget.setToolTip("Not now: logging in checks the token with the Hub, which cannot be reached. A token "
                              "saved before still works for the cached models")
        self._update_details_button()
        self.download_button.setText("Use cached model")
        cache_dir = self.cache_dir
        self.jobs.submit("cached", lambda: hub.cached_models(cache_dir))

    def _on_cancel_clicked(self) -> None:
        # huggingface_hub reports progress per received block, so the download stops at its next block.
        self._cancel.set()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling…")

    def _on_timer(self) -> None:
        p = self._progress
        if p is None or not p.total:
            return
        self.progress.setValue(int(1000 * min(1.0, p.done / p.total)))
        self.progress.setFormat(f"{_size(p.done)} of {_size(p.total)} · {_size(p.speed)}/s")

    @Slot(str, object)
    def _on_jobs_finished(self, key: str, result) -> None:
        if key == "offline":
            if result is True:
                self._go_offline("Offline (HF_HUB_OFFLINE is set): only models already in the cache and local "
                                 "folders can be used.")
            else:
                endpoint = self.endpoint
                self.jobs.submit("user", lambda: hub.current_user(endpoint))
            return
        if key == "cached":
            self.search = None
            self._show_hits([hub.ModelHit(i, 0, 0, "", "", "", None, False, False) for i in result], append=False)
            self.status.setText(f"{len(result)} model(s) in the Hugging Face cache")
            return
        if key in ("login", "user"):
            self.login_button.setEnabled(not self.offline)
            if isinstance(result, Failure):
                self.user_label.setText(f"<span style='color:#d04040'>{result.message}</span>")
            elif result:
                self.user_label.setText(f"Logged in as {result} (huggingface_hub's saved login).")
            return
        if isinstance(result, Failure) and "cannot reach the Hub" in result.message and not self.offline:
            self._go_offline("No network: the Hub cannot be reached. Models already in the cache and local folders "
                             "can be used.")
        if isinstance(result, Failure):
            self.status.setText(f"<span style='color:#d04040'>{result.message}</span>")
            if key in ("search", "more"):
                self.search_button.setEnabled(not self.offline)
            if key == "download":
                self._timer.stop()
                self.cancel_button.setEnabled(False)
                self.download_button.setEnabled(True)
            return
        if key in ("search", "more"):
            self.search, hits = result
            self.search_button.setEnabled(True)
            self._show_hits(hits, append=key == "more")
        elif key == "details":
            self._show_details(result)
        elif key == "download":
            self._timer.stop()
            self._on_timer()
            self.cancel_button.setEnabled(False)
            self.status.setText(f"In the Hugging Face cache: {result}")
            self.chosen.emit(repo_id_of(result))
