"""Small widget factories the dialogs share."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QTableWidget


def row_table(name: str, headers: tuple[str, ...] | list[str], rows: int = 0) -> QTableWidget:
    """A read-only table where a click selects one whole row."""
    table = QTableWidget(rows, len(headers))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(headers))
    table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    return table


def status_label(name: str) -> QLabel:
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    return label
