"""The bad inputs of the command line, opened in the window: the same words (a dialog or the list of what blocks
Start), never a traceback."""

from __future__ import annotations

import os

import pytest
import tomli_w
from PySide6.QtWidgets import QMessageBox
from tiny import project_dict

from qarac_gui import cli
from qarac_gui.ui.main_window import MainWindow

pytestmark = pytest.mark.usefixtures("torch_threads")

LONG = 120000


@pytest.fixture
def window(qtbot, monkeypatch):
    for name in ("question", "warning", "information", "critical"):
        monkeypatch.setattr(QMessageBox, name, lambda *a, **k: pytest.fail(f"unexpected modal dialog: {a[1:3]}"))
    w = MainWindow()
    w.show()
    yield w
    w.document.reset()
    w.close()


def _cli_error(capsys, path, tmp_path) -> str:
    """The message qarac-train gives, without its "error: " and the project path it starts with."""
    assert cli.main([str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert "unexpected" not in line and "Traceback" not in err
    return line.removeprefix("error: ").removeprefix(f"{path}: ")


def _write(tmp_path, model, edit=None, kinds=("classification",)):
    raw = project_dict(model, tmp_path / "data", list(kinds))
    if edit:
        edit(raw)
    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def _dialog_text(w) -> str:
    box = w.findChild(QMessageBox, "error_dialog")
    assert box is not None, "no error dialog"
    assert box.detailedText() == ""                 # a user's mistake gets words, not a folded traceback
    return box.text()


@pytest.mark.parametrize("make", [
    pytest.param(lambda tmp, model: (tmp / "p.toml").write_text("version = 1\n[optim\n") and tmp / "p.toml",
                 id="invalid-toml"),
    pytest.param(lambda tmp, model: os.mkfifo(tmp / "p.toml") or tmp / "p.toml", id="fifo"),
    pytest.param(lambda tmp, model: (tmp / "p.toml").mkdir() or tmp / "p.toml", id="folder"),
    pytest.param(lambda tmp, model: _write(tmp, model, lambda r: r["optim"].update(lrr=1)), id="unknown-key"),
    pytest.param(lambda tmp, model: _write(tmp, model, lambda r: r.update(version=99)), id="newer-version"),
])
def test_a_project_the_window_cannot_open_gets_the_cli_words_in_a_dialog(qtbot, window, tmp_path, tiny_bert,
                                                                        capsys, make):
    path = make(tmp_path, tiny_bert)
    expected = _cli_error(capsys, path, tmp_path)
    assert window.open_project(path, ask=False) is False
    assert expected in _dialog_text(window)


def _settled(w) -> bool:
    c = w.checks
    return (not w.jobs.busy and not c.pending and all(t.name in c.previews for t in w.document.project.tasks)
            and bool(c.problems))


@pytest.mark.parametrize("edit", [
    pytest.param(lambda r: r["optim"].update(lr=0), id="lr-zero"),
    pytest.param(lambda r: r["train"].update(seed=-1), id="negative-seed"),
    pytest.param(lambda r: r["backbones"]["encoder"].update(model="/no/such/model"), id="missing-model"),
    pytest.param(lambda r: r["backbones"]["encoder"].update(model="package:os"), id="not-a-model-package"),
    pytest.param(lambda r: r["tasks"][0]["data"].update(label="grade"), id="missing-column"),
    pytest.param(lambda r: r["tasks"][0].update(backbone="bert"), id="unknown-backbone"),
])
def test_a_project_the_window_opens_lists_the_cli_words_as_what_blocks_start(qtbot, window, tmp_path, tiny_bert,
                                                                            capsys, edit):
    path = _write(tmp_path, tiny_bert, edit)
    expected = _cli_error(capsys, path, tmp_path)
    assert window.open_project(path, ask=False)
    qtbot.waitUntil(lambda: _settled(window), timeout=LONG)
    shown = window.run_panel.problems.text()
    assert any(expected in p or p in expected for p in window.checks.problems), (expected, window.checks.problems)
    assert "Traceback" not in shown and not window.run_panel.start_button.isEnabled()
