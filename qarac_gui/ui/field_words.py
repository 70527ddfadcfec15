"""The window's words for the project file's keys. The core says "tasks.sentiment.data.text: …" (right for someone
editing the file); the window says "Tasks → sentiment → Text column: …" and can take the user to that field. The
labels are read from the window's own forms, so they are always the ones on screen."""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtWidgets import QCheckBox, QFormLayout, QGridLayout, QLabel, QLayout, QWidget

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.project.config import Project

# file section -> the tab that edits it
TAB_OF = {"backbones": "model", "tasks": "tasks", "task": "tasks", "optim": "training", "train": "training",
          "eval": "training", "checkpoint": "training"}
TAB_TITLE = {"model": "Base model", "tasks": "Tasks", "training": "Training"}
ROLE_LABELS = {"label": "Label column", "labels": "Labels column", "score": "Score column", "tags": "Tags column",
               "answers": "Answers column", "target": "Target text column"}
# keys whose field is not a form row of its own
SPECIAL = {"name": "Name", "backbone": "Encoder", "inputs": "Inputs"}

_LEAD = re.compile(r"^(?P<key>(?:backbones|tasks|optim|train|eval|checkpoint|export)(?:\[\d+\])?"
                   r"(?:\.[\w\-]+(?:\[\d+\])?)*)"
                   r": (?P<rest>.*)$", re.S)
_TASK_LEAD = re.compile(r"^task (?P<task>[\w\-]+): (?P<rest>.*)$", re.S)
# the core's words for someone editing the file -> the window's, which name its buttons and boxes
WINDOW_PHRASES = {
    "such as masked_lm, or give the task one file or Hub dataset":
        "such as Masked language modelling (the head's Type), or give the task one training file or Hub dataset",
    "give a Hub id, a local folder or package:<module>":
        "give a Hub id such as roberta-base and press Load, or a model folder (Folder…), or find one with Hub…",
    "give either train (a local file) or hub (a Hub dataset id)":
        "give either a training file (Browse…, or drop one on the Tasks tab) or a Hub dataset (Hub…)",
    "map the columns in the task's data settings": "choose the file's columns under Columns",
    "a classifier needs at least two; map the right label column":
        "a classifier needs at least two; choose the column that holds the classes under Columns, or add rows of "
        "another class",
}
# a union's source n: its row of fields in the data adapters editor, named data_union_<n>_<field>
_SOURCE = re.compile(r"^data_union_(?P<n>\d+)(?:_(?P<field>\w+))?$")
SOURCE_LABELS = {"location": "", "columns": "Columns", "filter": "Keep rows where",
                 "format": "Format", "hub_config": "Config", "split": "Split"}
SOURCE_PHRASES = {
    "give either train (a local file) or hub (a Hub dataset id)":
        "choose a local file (Browse…) or a Hub dataset, and give its path or id",
    'e.g. columns = ["premise"]': "e.g. premise, hypothesis",
}
_INLINE = re.compile(r"(?<![\w.])((?:data|head|optim|train|eval|checkpoint)\.[a-z_]+|max_length|batch_size)(?![\w.])")


@dataclass(frozen=True)
class Place:
    """Where in the window a key is edited: a tab, the task or backbone selected there, and the field's name."""
    tab: str = ""
    task: str = ""
    backbone: str = ""
    field: str = ""                # the editor's objectName ("data_text", "optim_lr"); "" for the item itself


@dataclass(frozen=True)
class Blocker:
    text: str                      # in the window's words
    place: Place


def form_label(widget: QWidget) -> str:
    """The label beside a field in its form or grid (the checkbox's own text for a check box)."""
    if isinstance(widget, QCheckBox) and widget.text():
        return widget.text().replace("&", "")
    parent = widget.parentWidget()
    while parent is not None:
        layout = parent.layout()
        if layout is not None:
            found = _label_in(layout, widget)
            if found:
                return found
        if parent.isWindow():
            break
        parent = parent.parentWidget()
    return ""


def _contains(item_layout: QLayout | None, widget: QWidget) -> bool:
    if item_layout is None:
        return False
    for i in range(item_layout.count()):
        item = item_layout.itemAt(i)
        if item.widget() is widget or _contains(item.layout(), widget):
            return True
    return False


def _label_in(layout: QLayout, widget: QWidget) -> str:
    if isinstance(layout, QFormLayout):
        for row in range(layout.rowCount()):
            field = layout.itemAt(row, QFormLayout.ItemRole.FieldRole)
            label = layout.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if field is None or label is None or not isinstance(label.widget(), QLabel):
                continue
            if field.widget() is widget or _contains(field.layout(), widget):
                return label.widget().text().replace("&", "")
    elif isinstance(layout, QGridLayout):
        index = layout.indexOf(widget)
        if index >= 0:
            row, column, _, _ = layout.getItemPosition(index)
            if column > 0:
                left = layout.itemAtPosition(row, column - 1)
                if left is not None and isinstance(left.widget(), QLabel):
                    return left.widget().text().replace("&", "")
    for i in range(layout.count()):
        child = layout.itemAt(i).layout()
        if child is not None:
            found = _label_in(child, widget)
            if found:
                return found
    return ""


def split_key(key: str, project: Project) -> Place:
    """tasks.sentiment.data.text -> the tasks tab, task sentiment, field data_text; tasks[2].name -> the third task."""
    m = re.match(r"^(\w+)(?:\[(\d+)\])?(?:\.(.*))?$", key)
    if not m:
        return Place()
    section, index, rest = m.group(1), m.group(2), m.group(3) or ""
    tab = TAB_OF.get(section, "")
    if section == "tasks":
        if index is not None:
            task = project.tasks[int(index)].name if int(index) < len(project.tasks) else ""
        else:
            names = sorted((t.name for t in project.tasks if t.name), key=len, reverse=True)
            task = next((n for n in names if rest == n or rest.startswith(n + ".")), "")
            rest = rest[len(task) + 1:] if task else ""
        if rest == "data":              # "give either a file or a Hub dataset": the first of the two
            rest = "data.train"
        rest = re.sub(r"^data\.union\[(\d+)\](?:\.(?:train|hub))?$", r"data.union[\1].location", rest)
        return Place(tab, task=task, field=re.sub(r"\[(\d+)\]", r"_\1", rest).replace(".", "_"))
    if section == "backbones":
        name = next((n for n in sorted(project.backbones, key=len, reverse=True)
                     if rest == n or rest.startswith(n + ".")), "")
        rest = rest[len(name) + 1:] if name else ""
        return Place(tab, backbone=name, field=rest.replace(".", "_"))
    return Place(tab, field=key.replace(".", "_"))


class FieldWords:
    """Turns the core's problems into the window's words; `panels` maps a tab ("model", "tasks", "training") to
    the widget holding its fields."""

    def __init__(self, panels: dict[str, QWidget]) -> None:
        self.panels = panels

    def label(self, place: Place, project: Project) -> str:
        if not place.field:
            return ""
        first = place.field.split("_", 1)[0]       # tasks.x.inputs.q -> inputs_q
        source = _SOURCE.match(place.field) if place.tab == "tasks" else None
        if source:                  # its row is the selected task's, so the words cannot come from the widget
            label = SOURCE_LABELS.get(source.group("field") or "", "")
            return f"Source {int(source.group('n')) + 1}" + (f" → {label}" if label else "")
        if place.tab == "tasks" and place.task:
            task = next((t for t in project.tasks if t.name == place.task), None)
            kind = HEAD_KINDS.get(task.head.kind) if task else None
            if kind is not None and place.field == "data_text":
                return kind.text_role
            if kind is not None and place.field == "data_text_pair":
                return kind.pair_role
            if kind is not None and task is not None and place.field == "data_label":
                return ROLE_LABELS.get(kind.label_role_for(task.head) or "label", "Label column")
        if place.tab == "tasks" and (place.field in SPECIAL or first == "inputs"):
            return SPECIAL.get(place.field) or SPECIAL["inputs"]
        panel = self.panels.get(place.tab)
        widget = panel.findChild(QWidget, place.field) if panel is not None else None
        return form_label(widget) if widget is not None else ""

    def path(self, place: Place, project: Project) -> str:
        parts = [TAB_TITLE.get(place.tab, "")]
        if place.task:
            parts.append(place.task)
        if place.backbone and len(project.backbones) > 1:
            parts.append(place.backbone)
        label = self.label(place, project)
        if label:
            parts.append(label)
        return " → ".join(p for p in parts if p)

    def inline(self, text: str, place: Place, project: Project) -> str:
        """Keys named inside a message ("raise data.validation_fraction") become “Held-out share”."""
        def words(m: re.Match) -> str:
            key = m.group(1)
            section = key.split(".", 1)[0]
            if section in ("optim", "train", "eval", "checkpoint"):
                there = Place("training", field=key.replace(".", "_"))
            else:
                there = Place("tasks", task=place.task, field=key.replace(".", "_"))
            label = self.label(there, project)
            return f"“{label}”" if label else key
        phrases = WINDOW_PHRASES
        if _SOURCE.match(place.field):
            phrases = phrases | SOURCE_PHRASES
        for core, window in phrases.items():
            text = text.replace(core, window)
        return _INLINE.sub(words, text)

    def blocker(self, problem: str, project: Project) -> Blocker:
        if problem.startswith("tasks: add at least one"):
            return Blocker("Tasks: add a task (the Add button of the Tasks tab) and give it data.",
                           Place("tasks", field="task_add"))
        lead = _LEAD.match(problem)
        if lead:
            place = split_key(lead.group("key"), project)
            where = self.path(place, project) or lead.group("key")
            return Blocker(f"{where}: {self.inline(lead.group('rest'), place, project)}", place)
        task = _TASK_LEAD.match(problem)
        if task:
            place = Place("tasks", task=task.group("task"))
            return Blocker(f"Tasks → {task.group('task')}: {self.inline(task.group('rest'), place, project)}",
                           place)
        return Blocker(problem, Place())

    def blockers(self, problems: list[str], project: Project) -> list[Blocker]:
        """Each problem once, in the order given."""
        out, seen = [], set()
        for problem in problems:
            b = self.blocker(problem, project)
            if b.text not in seen:
                seen.add(b.text)
                out.append(b)
        return out
