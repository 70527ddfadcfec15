"""Everything that happened, with times: progress, checkpoints, warnings and errors with their details."""

from __future__ import annotations

import time

from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

MAX_BLOCKS = 20000                # keeps a very long session's log from growing without bound


class LogPanel(QWidget):
    """A read-only, copyable log."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.text = QPlainTextEdit()
        self.text.setObjectName("log_text")
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_BLOCKS)
        layout.addWidget(self.text, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        copy = QPushButton("Copy all")
        copy.clicked.connect(self._on_copy_clicked)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.text.clear)
        row.addWidget(copy)
        row.addWidget(clear)
        layout.addLayout(row)

    def add(self, message: str, level: str = "info", details: str = "") -> None:
        stamp = time.strftime("%H:%M:%S")
        prefix = "" if level == "info" else f"{level.upper()}: "
        self.text.appendPlainText(f"{stamp}  {prefix}{message}")
        if details:
            self.text.appendPlainText("    " + details.rstrip().replace("\n", "\n    "))
        self.text.moveCursor(QTextCursor.MoveOperation.End)

    def lines(self) -> list[str]:
        return self.text.toPlainText().splitlines()

    def _on_copy_clicked(self) -> None:
        from PySide6.QtWidgets import QApplication
        QApplication.clipboard().setText(self.text.toPlainText())
