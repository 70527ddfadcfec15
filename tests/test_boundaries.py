import subprocess
import sys


def test_core_and_cli_import_neither_qt_nor_heavy_libraries_at_import():
    code = ("import sys, qarac_gui.core.run, qarac_gui.core.config, qarac_gui.core.schedule, qarac_gui.cli;"
            "bad = [m for m in ('PySide6', 'pyqtgraph', 'torch', 'transformers', 'datasets') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_core_module_imports_qt():
    from pathlib import Path

    import qarac_gui
    core = Path(qarac_gui.__file__).parent / "core"
    offenders = [p.name for p in core.glob("*.py")
                 if any(word in p.read_text() for word in ("PySide6", "pyqtgraph", "qarac_gui.ui"))]
    assert offenders == []
