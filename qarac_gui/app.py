"""The GUI entry point (qarac-gui, python -m qarac_gui): the only place that creates the QApplication."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "datasets")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qarac-gui", description="Multi-task fine-tuning, point and click.")
    parser.add_argument("project", nargs="?", help="a project file (.toml) to open")
    parser.add_argument("--demo", action="store_true", help="open the demo project (trains offline)")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation: train the demo for a few steps offscreen, export, exit 0 if "
                        "all worked")
    parser.add_argument("--self-test-steps", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--probe-startup", action="store_true", help=argparse.SUPPRESS)
    args, _qt_args = parser.parse_known_args(argv)
    return args


def _on_sigterm(app, handler) -> None:
    """Run `handler` in the GUI thread when SIGTERM arrives. Python only runs signal handlers between bytecodes, and
    Qt's event loop runs none while idle, so a timer wakes the interpreter a few times a second."""
    import signal

    from PySide6.QtCore import QTimer
    if not hasattr(signal, "SIGTERM"):
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: QTimer.singleShot(0, handler))
    waker = QTimer(app)
    waker.timeout.connect(lambda: None)
    waker.start(250)


def main(argv: list[str] | None = None) -> int:
    if getattr(sys, "frozen", False):       # a bundled app: child processes must not start a second window
        import multiprocessing
        multiprocessing.freeze_support()
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    scratch = None
    if args.self_test:
        import os
        import tempfile
        if not os.environ.get("QT_QPA_PLATFORM"):       # also when set but empty
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        if not os.environ.get("QARAC_GUI_DATA"):       # the user's runs, settings and autosave stay untouched
            scratch = Path(tempfile.mkdtemp(prefix="qarac-gui-self-test-"))
            os.environ["QARAC_GUI_DATA"] = str(scratch)
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from qarac_gui.core import paths
    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    app.setApplicationName("qarac_gui")
    app.setOrganizationName("qarac_gui")
    app.setDesktopFileName("qarac-gui")
    icon = paths.resource_path("icons", "qarac_gui.svg")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    from qarac_gui.ui.main_window import MainWindow, autosave_path
    window = MainWindow()
    if args.demo:
        window.open_project(paths.resource_path("demo", "project.toml"), ask=False)
    elif args.project:
        from qarac_gui.core.project.config import ConfigError, check_regular_file
        try:                # a FIFO would hang the window before it shows; say so on the terminal instead
            check_regular_file(Path(args.project), "project file", ConfigError)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        window.open_project(Path(args.project), ask=False)
    window.show()
    # What exists now (Qt, pyqtgraph, numpy, the window) lives as long as the app: out of the garbage collector's
    # sight, a full collection walks only what comes after (the heavy imports are frozen the same way later)
    gc.freeze()
    _on_sigterm(app, window.terminate)
    if args.self_test:
        from qarac_gui.self_test import run_self_test
        return run_self_test(app, window, args.self_test_steps, scratch)
    if args.probe_startup:
        def report() -> None:
            print(json.dumps({"heavy_modules_loaded": [m for m in HEAVY if m in sys.modules],
                              "title": window.windowTitle()}), flush=True)
            app.quit()
        QTimer.singleShot(0, report)
    else:
        def recover() -> None:      # unsaved work first (a modal question), then runs a crash cut short
            if autosave_path().is_file():
                window.offer_recovery()
            window.offer_interrupted_runs()
        QTimer.singleShot(300, recover)
    return app.exec()
