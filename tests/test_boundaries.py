import subprocess
import sys


def test_core_and_cli_import_neither_qt_nor_heavy_libraries_at_import():
    code = ("import sys, qarac_gui.core.run, qarac_gui.core.project.config, qarac_gui.core.training.plan,"
            " qarac_gui.cli;"
            "bad = [m for m in ('PySide6', 'pyqtgraph', 'torch', 'transformers', 'datasets') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_core_module_imports_qt():
    from pathlib import Path

    import qarac_gui
    core = Path(qarac_gui.__file__).parent / "core"
    offenders = [str(p.relative_to(core)) for p in core.rglob("*.py")
                 if any(word in p.read_text() for word in ("PySide6", "pyqtgraph", "qarac_gui.ui"))]
    assert offenders == []


def _lint(tmp_path, edit=None):
    """lint-imports on a copy of the package (and its contracts), optionally after an edit to one module."""
    import shutil
    from pathlib import Path

    import qarac_gui
    root = Path(qarac_gui.__file__).parent.parent
    shutil.copytree(root / "qarac_gui", tmp_path / "qarac_gui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    if edit:
        edit(tmp_path / "qarac_gui")
    linter = Path(sys.executable).with_name("lint-imports")
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(linter.parent)}
    return subprocess.run([str(linter)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_the_layers_hold(tmp_path):
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def _append(path, line):
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def test_an_upward_import_hidden_in_a_function_breaks_the_layers(tmp_path):
    # the guard (bottom of training) reaching up to the setup that builds runs: the kind of cycle that hid before
    result = _lint(tmp_path, lambda pkg: _append(pkg / "core" / "training" / "guard.py",
                                                 "\n\ndef _upward():\n"
                                                 "    from qarac_gui.core.training.setup import build_run\n"
                                                 "    return build_run\n"))
    assert result.returncode == 1
    assert "training is layered: setup builds the loop, the loop uses the step's parts BROKEN" in result.stdout
    assert "qarac_gui.core.training.guard -> qarac_gui.core.training.setup" in result.stdout


def test_the_project_file_importing_the_model_breaks_the_layers(tmp_path):
    result = _lint(tmp_path, lambda pkg: _append(pkg / "core" / "project" / "config.py",
                                                 "\n\ndef _upward():\n"
                                                 "    from qarac_gui.core.model import backbone\n"
                                                 "    return backbone\n"))
    assert result.returncode == 1
    assert "core is layered: a run above its parts, the project file at the bottom BROKEN" in result.stdout
