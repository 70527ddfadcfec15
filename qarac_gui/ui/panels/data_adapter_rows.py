"""The rows of the data adapters editor (a label map's row, a source of a union) and the words and checks of their
fields: values typed for the label map, column lists, filters."""

from __future__ import annotations

import re
from typing import Any, Callable

from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QToolButton, QWidget

from qarac_gui.core.data.load import EXTENSION_FORMATS
from qarac_gui.core.project.config import FORMATS
from qarac_gui.core.project.filters import FilterError, compile_filter
from qarac_gui.ui.form import INVALID_STYLE, ComboBox

DATA_FILTER = f"Data files ({' '.join('*' + e for e in EXTENSION_FORMATS)});;All files (*)"
FILTER_TIP = ("Keep only the rows this condition holds for: a column compared with a constant (label != -1, "
              "score >= 0.5, split in ['a', 'b']), joined with and, or, not and brackets. Empty: every row. Nothing "
              "in it is run as Python.")
TASK_FILTER_TIP = FILTER_TIP + " Applied before the label map and before validation rows are held out."
SOURCE_FILTER_TIP = FILTER_TIP + " Applied to this source's rows before their texts are taken."
KEY_TIP = "A label cell's text, e.g. 0 (the cells 0 and 0.0 both match it) or positive."
VALUE_TIP = ("What the head trains on instead: a whole number, a decimal, or a text (in quotes for a text that "
             "looks like a number, e.g. \"1\"). Every value must be a number, or every value a text.")
COLUMNS_TIP = "The text columns whose cells are taken, separated by commas, e.g. premise, hypothesis."
LOCATION_TIPS = {"file": "A local data file (CSV, TSV, JSON, JSONL or Parquet).",
                 "hub": "A dataset id on the Hugging Face Hub, e.g. stanfordnlp/snli."}
PLACEHOLDERS = {"file": "a local file…", "hub": "e.g. stanfordnlp/snli"}
KINDS = [("file", "File"), ("hub", "Hub")]
_INT = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def parse_value(text: str) -> int | float | str:
    """A label map value as typed: a whole number, a decimal, or a text (quotes keep a number-like text a text)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if _INT.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def shown_value(value: Any) -> str:
    """The text parse_value() reads back as the same value."""
    if isinstance(value, str):
        return value if value and parse_value(value) == value else f'"{value}"'
    return repr(value) if isinstance(value, float) else str(value)


def value_problem(text: str) -> str:
    if not text.strip():
        return "give the value the head trains on: a number, or a text"
    value = parse_value(text)
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        return f"{text.strip()} is beyond the 64-bit integers a label column holds; use a smaller number"
    return ""


def columns_of(text: str) -> list[str]:
    return list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))


def mark(edit: QWidget, problem: str, tip: str) -> None:
    edit.setStyleSheet(INVALID_STYLE if problem else "")
    edit.setToolTip(f"{problem} {tip}" if problem else tip)


def tool_button(text: str, tip: str, slot: Callable[[], None]) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


def refused(edit: QLineEdit, text: str, tip: str) -> str:
    """Check a typed filter with the grammar: a bad one is marked and refused, as Binder.number refuses a bad
    number (the project keeps the last filter that parses), and why is returned; a good or empty one is unmarked,
    and "" returned."""
    try:
        if text:
            compile_filter(text)
    except FilterError as e:
        mark(edit, f"{e}. Not saved: fix it, or clear the field to keep every row.", tip)
        return f"{e}; the project keeps its last filter until the field holds one that parses, or is cleared"
    mark(edit, "", tip)
    return ""


class LabelRow:
    def __init__(self, editor: Any) -> None:
        self.key = QLineEdit()
        self.key.setToolTip(KEY_TIP)
        self.key.setPlaceholderText("cell text")
        self.arrow = QLabel("→")
        self.value = QLineEdit()
        self.value.setToolTip(VALUE_TIP)
        self.value.setPlaceholderText("new value")
        self.remove = tool_button("✕", "Remove this row of the label map", lambda: editor._on_label_removed(self))
        self.shown = ""          # the key in the project, as shown
        self.key.editingFinished.connect(lambda: editor._on_label_key_edited(self))
        self.value.editingFinished.connect(lambda: editor._on_label_value_edited(self))

    def widgets(self) -> tuple:
        return self.key, self.arrow, self.value, self.remove


class SourceRow(QFrame):
    def __init__(self, editor: Any, kind: str) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.kind = kind            # file or hub: an empty source names neither, so the row remembers which
        self.number = QLabel()
        self.kind_box = ComboBox()
        for _, label in KINDS:
            self.kind_box.addItem(label)
        self.kind_box.setToolTip("Where this source's rows come from: a local file or a Hub dataset split.")
        self.location = QLineEdit()
        self.location.setMinimumWidth(80)
        self.browse = QPushButton("Browse…")
        self.browse.setToolTip("Choose a local data file")
        self.up = tool_button("↑", "Move this source up (the texts keep their first-seen order)",
                               lambda: editor._on_source_moved(self, -1))
        self.down = tool_button("↓", "Move this source down", lambda: editor._on_source_moved(self, 1))
        self.remove = tool_button("✕", "Remove this source", lambda: editor._on_source_removed(self))
        self.hub_config = QLineEdit()
        self.hub_config.setPlaceholderText("default")
        self.hub_config.setToolTip("The Hub dataset's configuration, e.g. sst2 for glue; empty: its default.")
        self.split = QLineEdit()
        self.split.setToolTip("The Hub split to take, e.g. train.")
        self.format = ComboBox()
        self.format.addItems(FORMATS)
        self.format.setToolTip("auto: from the file's extension.")
        self.columns = QLineEdit()
        self.columns.setPlaceholderText("e.g. premise, hypothesis")
        self.columns.setToolTip(COLUMNS_TIP)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("every row")
        self.filter.setToolTip(SOURCE_FILTER_TIP)

        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        line = QHBoxLayout()
        for widget in (self.number, self.kind_box):
            line.addWidget(widget)
        line.addWidget(self.location, 1)
        for widget in (self.browse, self.up, self.down, self.remove):
            line.addWidget(widget)
        grid.addLayout(line, 0, 0, 1, 4)
        self.config_label, self.split_label, self.format_label = QLabel("Config"), QLabel("Split"), QLabel("Format")
        grid.addWidget(self.config_label, 1, 0)
        grid.addWidget(self.hub_config, 1, 1)
        grid.addWidget(self.split_label, 1, 2)
        grid.addWidget(self.split, 1, 3)
        grid.addWidget(self.format_label, 1, 0)
        grid.addWidget(self.format, 1, 1)
        grid.addWidget(QLabel("Columns"), 2, 0)
        grid.addWidget(self.columns, 2, 1)
        grid.addWidget(QLabel("Keep rows where"), 2, 2)
        grid.addWidget(self.filter, 2, 3)
        grid.setColumnStretch(1, 3)         # column names are longer than the filters beside them
        grid.setColumnStretch(3, 2)

        self.kind_box.activated.connect(lambda i: editor._on_source_kind_chosen(self, KINDS[i][0]))
        self.browse.clicked.connect(lambda: editor._on_source_browse_clicked(self))
        self.format.activated.connect(lambda _: editor._on_source_edited(self))
        for edit in (self.location, self.hub_config, self.split, self.columns):
            edit.editingFinished.connect(lambda: editor._on_source_edited(self))
        self.filter.editingFinished.connect(lambda: editor._on_source_filter_edited(self))

    def editors(self) -> tuple:
        return (self.kind_box, self.location, self.hub_config, self.split, self.format, self.columns, self.filter)

    def name_fields(self, n: int) -> None:
        """Name the editors after the project's keys (tasks.x.data.union[n].columns -> data_union_n_columns), so
        that a problem with source n links to its field."""
        for name in ("location", "hub_config", "split", "format", "columns", "filter"):
            getattr(self, name).setObjectName(f"data_union_{n}_{name}")

    def show_kind(self) -> None:
        hub = self.kind == "hub"
        self.kind_box.setCurrentIndex(1 if hub else 0)
        self.location.setPlaceholderText(PLACEHOLDERS[self.kind])
        self.browse.setVisible(not hub)
        for widget in (self.config_label, self.hub_config, self.split_label, self.split):
            widget.setVisible(hub)
        for widget in (self.format_label, self.format):
            widget.setVisible(not hub)
