"""Choosing a Hub dataset for a task in the real window, with `datasets` pointed at the stand-in Hub.

`datasets` reads HF_ENDPOINT when it is imported, so the window runs in a subprocess whose environment names the
stand-in; the script clicks through it as a user would and reports what the window then shows.
"""

import json
import os
import subprocess
import sys

import pytest
from hub_server import Repo, StandInHub

ROWS = [(f"good film {i}", "pos") if i % 2 == 0 else (f"bad film {i}", "neg") for i in range(30)]
CSV = ("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS)).encode()
TEST_CSV = ("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS[:7])).encode()

SCRIPT = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication, QPushButton
from qarac_gui.ui.main_window import MainWindow
app = QApplication([])
w = MainWindow()
w.show()
messages = []
w.checks.download_progress.connect(messages.append)

def wait(condition, seconds=120):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not condition():
        app.processEvents()
        time.sleep(0.01)
    assert condition(), "timed out"

w.tasks_panel.add_task()
editor = w.tasks_panel.editor
opened = []
original = w.dataset_dialog
w.tasks_panel.hub_dataset_requested.disconnect(w.dataset_dialog)
w.tasks_panel.hub_dataset_requested.connect(lambda i: opened.append(original(i, endpoint=sys.argv[1])))
editor.findChild(QPushButton, "browse_hub_dataset").click()
dialog = opened[0]
dialog.query.setText("reviews")
dialog.search_button.click()
wait(lambda: dialog.table.rowCount() > 0)
found = [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]
dialog.table.selectRow(0)
wait(lambda: dialog.use_button.isEnabled())
shown = {"features": dialog.features.text(), "rows": dialog.rows.rowCount(),
         "train": dialog.train_combo.currentText(), "valid": dialog.valid_combo.currentText()}
dialog.use_button.click()
data = w.document.project.tasks[0].data
wait(lambda: bool(getattr(w.checks.previews.get("classification"), "columns", None)) and not w.checks.pending)
preview = w.checks.previews["classification"]
print(json.dumps({"found": found, "shown": shown, "data": [data.hub, data.hub_config, data.train_split,
                  data.validation_split, data.train], "columns": preview.columns, "errors": preview.errors,
                  "train_rows": preview.train_rows, "valid_rows": preview.valid_rows, "labels": preview.labels,
                  "downloads": messages, "status": w.statusBar().currentMessage()}))
w.document.reset()
w.close()
"""


@pytest.mark.slow
def test_choose_a_hub_dataset_for_a_task(tmp_path):
    hub = StandInHub().start()
    try:
        hub.add_dataset(Repo("acme/reviews", {"train.csv": CSV, "test.csv": TEST_CSV},
                             downloads=9))
        hub.add_dataset(Repo("acme/news", {"train.csv": CSV}))
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "QT_QPA_PLATFORM": "offscreen",
               "HF_HOME": str(tmp_path / "hf-home"), "HF_DATASETS_CACHE": str(tmp_path / "ds"),
               "QARAC_GUI_DATA": str(tmp_path / "data"), "QARAC_GUI_CACHE": str(tmp_path / "cache")}
        result = subprocess.run([sys.executable, "-c", SCRIPT, hub.url], capture_output=True, text=True, env=env,
                                timeout=300)
    finally:
        hub.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["found"] == ["acme/reviews"]
    assert out["shown"] == {"features": "text (string), label (string)", "rows": 10, "train": "train",
                            "valid": "test"}
    assert out["data"] == ["acme/reviews", "", "train", "test", ""]
    assert out["errors"] == [] and out["columns"] == ["text", "label"]
    assert out["train_rows"] == 30 and out["valid_rows"] == 7 and out["labels"] == ["neg", "pos"]
    # the files came down with progress before the preview read them
    size = (len(CSV) + len(TEST_CSV)) / 1e6
    assert out["downloads"]
    assert out["downloads"][-1].startswith(f"Downloading acme/reviews: {size:.1f} of {size:.1f} MB")
    assert out["status"] == out["downloads"][-1]
