"""Small widget factories the dialogs share."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPushButton, QTableWidget


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


def show_details_state(button: QPushButton, typed: str, offline: bool, example: str, instead: str = "") -> None:
    """A Hub dialog's Details asks the Hub about the id typed in the search box: with no id, or no Hub, it is
    greyed out and its tooltip says why, and what to do `instead` while offline."""
    if offline:
        why = ". ".join(filter(None, ["Not now: the Hub cannot be reached, so it has no details to give", instead]))
    elif not typed.strip():
        why = f"Type an id in the search box first, e.g. {example}, or select a search result"
    else:
        why = ""
    button.setEnabled(not why)
    button.setToolTip(why or "Show the details of the id typed in the search box")
