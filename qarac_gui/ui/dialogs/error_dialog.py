"""A failure as a person reads it: what went wrong and what to do, with the technical details folded away."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> QMessageBox:
    """Non-blocking (open(), not exec()) so a run's events keep flowing while it is shown."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("error_dialog")
    if details:
        box.setDetailedText(details)          # expandable, selectable and copyable
    box.open()
    return box
