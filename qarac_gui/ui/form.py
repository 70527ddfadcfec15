"""Widgets bound to fields of the open project: edits go through the document (undo), and refresh() shows it."""

from __future__ import annotations

import math
from typing import Any, Callable

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QToolTip, QWidget

from qarac_gui.ui.document import ProjectDocument, get_path

INVALID_STYLE = "border: 1px solid #d04040;"


class _WheelWhenFocused:
    """The mouse wheel changes the value only once the field has focus: scrolling a form past it leaves it be."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)     # the default (wheel focus) takes focus on a scroll

    def wheelEvent(self, event: Any) -> None:
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()          # passed on to the scroll area around the form


class ComboBox(_WheelWhenFocused, QComboBox):
    pass


class SpinBox(_WheelWhenFocused, QSpinBox):
    pass


class DoubleSpinBox(_WheelWhenFocused, QDoubleSpinBox):
    pass


def set_relevant(widget: QWidget, relevant: bool, why: str = "") -> None:
    """Enable a field, or grey it out with the reason it does nothing now after its own tooltip."""
    own = widget.property("own_tip")
    if own is None:
        own = widget.toolTip()
        widget.setProperty("own_tip", own)
    widget.setEnabled(relevant)
    note = "" if relevant or not why else f"Not used now: {why}"
    widget.setToolTip("\n\n".join(t for t in (own, note) if t))


def refusal(text: str, minimum: float, maximum: float) -> str:
    """Why a field refuses `text`: "'0' is not a number from 1e-09 to 1"."""
    what = f"{text!r} is not a number" if text else "The field is empty: it needs a number"
    limits = f"from {minimum:g} to {maximum:g}" if math.isfinite(maximum) else f"of at least {minimum:g}"
    return f"{what} {limits}"


def refuse_number(edit: QLineEdit, text: str, minimum: float, maximum: float, kept: Any, tip: str) -> None:
    """Mark a number the field cannot take and say so at the field at once: the project keeps its old value, which
    a run would use, so a red border alone would leave the user believing the typed one counts."""
    message = f"{refusal(text, minimum, maximum)}; type one like that. Until then the project keeps {kept:g}."
    edit.setStyleSheet(INVALID_STYLE)
    edit.setToolTip("\n\n".join(t for t in (message, tip) if t))
    if edit.isVisible():
        QToolTip.showText(edit.mapToGlobal(QPoint(0, edit.height())), message, edit)


class _Field:
    def __init__(self, key: str, widget: QWidget, show: Callable[[Any], None]) -> None:
        self.key, self.widget, self.show = key, widget, show


class Binder:
    """Creates editors for dotted keys under a prefix (e.g. "tasks.2" for the selected task)."""

    def __init__(self, document: ProjectDocument, prefix: str = "") -> None:
        self.document = document
        self.prefix = prefix
        self.fields: list[_Field] = []
        self.commit_hooks: dict[str, Callable[[Any], None]] = {}     # key -> what commits it instead of set_value

    def _full(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _commit(self, key: str, value: Any) -> None:
        try:
            self.value(key)
        except (IndexError, KeyError, AttributeError):
            return          # what it edited is gone: a field that loses focus after New, Open or Undo
        if key in self.commit_hooks:
            self.commit_hooks[key](value)
            return
        from qarac_gui.ui.field_words import form_label
        widget = next((f.widget for f in self.fields if f.key == key), None)
        self.document.set_value(self._full(key), value, form_label(widget) if widget is not None else "")

    def value(self, key: str) -> Any:
        return get_path(self.document.project, self._full(key))

    def refresh(self) -> None:
        for f in self.fields:
            f.widget.blockSignals(True)
            try:
                f.show(self.value(f.key))
            finally:
                f.widget.blockSignals(False)

    def _add(self, key: str, widget: QWidget, show: Callable[[Any], None], tip: str) -> QWidget:
        widget.setObjectName(key.replace(".", "_"))
        if tip:
            widget.setToolTip(tip)
            widget.setWhatsThis(tip)
        self.fields.append(_Field(key, widget, show))
        return widget

    def number(self, key: str, tip: str = "", minimum: float = 0.0, maximum: float = math.inf) -> QLineEdit:
        """A float in a text box, so 1e-5 and 0.00001 both work; out-of-range input is marked, not saved."""
        edit = QLineEdit()
        refused = [""]          # the full key this field refused a value for (the prefix moves with the task)

        def accept() -> None:
            if refused[0]:
                self.document.accept(refused[0])
                refused[0] = ""

        def commit() -> None:
            text = edit.text().strip()
            try:
                value = float(text)
                if not (minimum <= value <= maximum) or not math.isfinite(value):
                    raise ValueError
            except ValueError:
                try:
                    kept = self.value(key)
                except (IndexError, KeyError, AttributeError):
                    return          # what it edited is gone
                refuse_number(edit, text, minimum, maximum, kept, tip)
                accept()
                refused[0] = self._full(key)
                self.document.refuse(refused[0], refusal(text, minimum, maximum))
                return
            edit.setStyleSheet("")
            edit.setToolTip(tip)
            accept()
            self._commit(key, value)

        def show(value: Any) -> None:
            if edit.styleSheet() == INVALID_STYLE:
                edit.setToolTip(tip)        # a refusal's words go with the text they were about
            edit.setText(f"{value:g}")
            edit.setStyleSheet("")
            accept()

        def back_to_kept(text: str) -> None:
            """The field's own undo (Ctrl+Z while typing) brought back the value the project kept: nothing is
            refused any more, though the field has not been left."""
            try:
                kept = f"{self.value(key):g}"
            except (IndexError, KeyError, AttributeError, TypeError, ValueError):
                return
            if refused[0] and text.strip() == kept:
                edit.setStyleSheet("")
                edit.setToolTip(tip)
                accept()

        edit.editingFinished.connect(commit)
        edit.textChanged.connect(back_to_kept)
        return self._add(key, edit, show, tip)

    def integer(self, key: str, tip: str = "", minimum: int = 0, maximum: int = 10**9,
                special: str = "") -> QSpinBox:
        box = SpinBox()
        box.setRange(minimum, maximum)
        box.setKeyboardTracking(False)
        if special:
            box.setSpecialValueText(special)       # shown for the minimum, e.g. "off" for 0
        box.valueChanged.connect(lambda v: self._commit(key, int(v)))
        return self._add(key, box, box.setValue, tip)

    def decimal(self, key: str, tip: str = "", minimum: float = 0.0, maximum: float = 1.0,
                step: float = 0.05, decimals: int = 3) -> QDoubleSpinBox:
        box = DoubleSpinBox()
        box.setRange(minimum, maximum)
        box.setSingleStep(step)
        box.setDecimals(decimals)
        box.setKeyboardTracking(False)
        box.valueChanged.connect(lambda v: self._commit(key, float(v)))
        return self._add(key, box, box.setValue, tip)

    def check(self, key: str, text: str, tip: str = "") -> QCheckBox:
        box = QCheckBox(text)
        box.toggled.connect(lambda v: self._commit(key, bool(v)))
        return self._add(key, box, box.setChecked, tip)

    def choice(self, key: str, choices: list[tuple[Any, str]], tip: str = "") -> QComboBox:
        combo = ComboBox()
        values = [value for value, _ in choices]          # by index: values may be None or bool
        for _, label in choices:
            combo.addItem(label)

        def show(value: Any) -> None:
            matches = [i for i, v in enumerate(values) if v == value and type(v) is type(value)]
            if not matches:                     # a value the list does not offer: show it rather than hide it
                values.append(value)
                combo.addItem(str(value))
                matches = [len(values) - 1]
            combo.setCurrentIndex(matches[0])

        combo.activated.connect(lambda i: self._commit(key, values[i]))
        return self._add(key, combo, show, tip)

    def text(self, key: str, tip: str = "", placeholder: str = "") -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.editingFinished.connect(lambda: self._commit(key, edit.text().strip()))
        return self._add(key, edit, lambda v: edit.setText(str(v)), tip)

    def text_list(self, key: str, tip: str = "", placeholder: str = "") -> QLineEdit:
        """A list of names typed in one line, separated by commas or spaces; empty is the empty list."""
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.editingFinished.connect(
            lambda: self._commit(key, [part for part in edit.text().replace(",", " ").split() if part]))
        return self._add(key, edit, lambda v: edit.setText(", ".join(v)), tip)

    def column(self, key: str, tip: str = "") -> QComboBox:
        """An editable combo box offering the data's real columns; set_columns() fills it."""
        combo = ComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)

        def show(value: Any) -> None:
            combo.setEditText(str(value))

        combo.activated.connect(lambda i: self._commit(key, combo.itemText(i)))
        combo.lineEdit().editingFinished.connect(lambda: self._commit(key, combo.currentText().strip()))
        return self._add(key, combo, show, tip)


def set_columns(combo: QComboBox, columns: list[str], allow_empty: bool = False) -> None:
    text = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    if allow_empty:
        combo.addItem("")
    combo.addItems(columns)
    combo.setEditText(text)
    combo.blockSignals(False)
