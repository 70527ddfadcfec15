"""Asking the user before a model's repository code runs, once per repository and revision."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtWidgets import QMessageBox, QWidget

from qarac_gui.core.errors import UserError
from qarac_gui.core.model import code_trust
from qarac_gui.core.project.config import Project


def source_of(project: Project, name: str) -> code_trust.CodeSource | None:
    from qarac_gui.core.model.backbone import resolve_source
    cfg = project.backbones[name]
    try:
        source, local = resolve_source(cfg.model, project.root)
    except UserError:               # the load itself reports why the model cannot be found
        return None
    return code_trust.code_source(source, local, cfg.revision)


def ask(parent: QWidget | None, name: str, source: code_trust.CodeSource) -> bool:
    answer = QMessageBox.warning(
        parent, "Run the model's own code?",
        f"Backbone {name!r} sets trust_remote_code = true: loading it runs the Python code of "
        f"{source.describe()} on this computer, with everything your account may do.\n\n"
        "Run it only if you trust whoever wrote that code. Your answer is remembered for this repository and "
        "revision.\n\nRun its code?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def confirm(parent: QWidget | None, project: Project, names: Iterable[str] | None = None,
            again: bool = False) -> None:
    """Ask for each backbone that wants repository code nobody has answered for (or all of them, `again`), and
    remember the answers. Loads then follow the answers; nothing is loaded here."""
    store = code_trust.policy()
    if not isinstance(store, code_trust.StoredAnswers):
        return
    for name in names if names is not None else list(project.backbones):
        cfg = project.backbones.get(name)
        if cfg is None or not cfg.trust_remote_code or not cfg.model.strip():
            continue
        source = source_of(project, name)
        if source is None or (store.answer(source) is not None and not again):
            continue
        store.remember(source, ask(parent, name, source))
