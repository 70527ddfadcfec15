"""Opening a project that asks for trust_remote_code runs no code until the user says yes, in the real window."""

from __future__ import annotations

import pytest
import tomli_w
from PySide6.QtWidgets import QMessageBox
from tiny import make_code_model, project_dict

from qarac_gui.ui.main_window import MainWindow

pytestmark = pytest.mark.usefixtures("torch_threads")

LONG = 120000


class Prompts:
    """Stands in for the user at QMessageBox.warning: records each question and gives the set answer."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.answer = QMessageBox.StandardButton.No

    def __call__(self, parent, title, text, *args, **kwargs):
        self.asked.append(f"{title}\n{text}")
        return self.answer


@pytest.fixture
def prompts(monkeypatch):
    p = Prompts()
    monkeypatch.setattr(QMessageBox, "warning", p)
    for name in ("question", "information", "critical"):
        monkeypatch.setattr(QMessageBox, name, lambda *a, **k: pytest.fail(f"unexpected dialog: {a[1:3]}"))
    return p


@pytest.fixture
def project_file(tmp_path, tiny_bert):
    marker = tmp_path / "MARKER"
    folder = make_code_model(tmp_path / "code-model", marker, tiny_bert)
    raw = project_dict(folder, tmp_path / "data", ["classification"])
    raw["backbones"]["encoder"]["trust_remote_code"] = True
    path = tmp_path / "shared-project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path, folder, marker


def _close(w):
    w.document.reset()
    w.close()


def test_no_code_runs_until_the_user_says_yes(qtbot, prompts, project_file):
    path, folder, marker = project_file
    w = MainWindow()
    w.show()
    with qtbot.waitSignal(w.checks.model_failed, timeout=LONG) as failed:
        assert w.open_project(path, ask=False)
    assert len(prompts.asked) == 1
    assert str(folder) in prompts.asked[0] and "trust_remote_code = true" in prompts.asked[0]
    assert "that was refused, so the model was not loaded" in failed.args[0]
    assert "refused" in w.model_panel.status.text()
    assert not marker.exists()
    _close(w)

    # the answer is remembered: opening it again neither asks nor runs anything
    w = MainWindow()
    w.show()
    with qtbot.waitSignal(w.checks.model_failed, timeout=LONG):
        assert w.open_project(path, ask=False)
    assert len(prompts.asked) == 1 and not marker.exists()

    # ticking the box again is the user's own request: asked again, and a Yes loads the model with its code
    prompts.answer = QMessageBox.StandardButton.Yes
    box = w.model_panel.trust_box
    assert box.isChecked()
    box.click()                                  # off: nothing asked
    assert len(prompts.asked) == 1
    with qtbot.waitSignal(w.checks.model_loaded, timeout=LONG) as loaded:
        box.click()                              # on: asked, yes
    assert len(prompts.asked) == 2
    assert loaded.args[0].model_type == "marker-bert"            # only the folder's own code knows this type
    assert marker.read_text() == "the repository code ran"
    assert w.document.project.backbones["encoder"].trust_remote_code
    _close(w)


def test_a_no_while_ticking_the_box_unticks_it(qtbot, prompts, tmp_path, tiny_bert):
    marker = tmp_path / "MARKER"
    folder = make_code_model(tmp_path / "code-model", marker, tiny_bert)
    raw = project_dict(folder, tmp_path / "data", ["classification"])
    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    w = MainWindow()
    w.show()
    with qtbot.waitSignal(w.checks.model_failed, timeout=LONG) as failed:     # its code is needed, and not allowed
        assert w.open_project(path, ask=False)
    assert "needs custom code from its repository" in failed.args[0] and "trust_remote_code" in failed.args[0]
    assert prompts.asked == []
    w.model_panel.trust_box.click()
    assert len(prompts.asked) == 1 and str(folder) in prompts.asked[0]
    assert not w.model_panel.trust_box.isChecked()
    assert not w.document.project.backbones["encoder"].trust_remote_code
    assert not marker.exists()
    _close(w)


def test_a_module_named_as_a_package_model_is_never_imported_by_the_window(qtbot, prompts, tmp_path, tiny_bert,
                                                                          monkeypatch):
    marker = tmp_path / "MARKER"
    (tmp_path / "evil_model.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "def get_model_path():\n    return '.'\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))        # as `python -m qarac_gui` started from this folder would
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"])
    raw["backbones"]["encoder"]["model"] = "package:evil_model"
    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    w = MainWindow()
    w.show()
    with qtbot.waitSignal(w.checks.model_failed, timeout=LONG) as failed:
        assert w.open_project(path, ask=False)
    assert "'evil_model' is not an installed model package, so it was not imported" in failed.args[0]
    assert prompts.asked == [] and not marker.exists()
    _close(w)
