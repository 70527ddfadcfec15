"""qarac-gui --self-test: the smoke test of an installed app or a bundle. The real window (offscreen) opens the
demo project, trains a few steps in the background thread, exports, and the exported classifier is loaded back
with plain transformers. Exit code 0 only if all of that worked; one JSON line on stdout says what happened."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

TIMEOUT_MS = 15 * 60 * 1000


def run_self_test(app: Any, window: Any, steps: int, scratch: Path | None) -> int:
    from PySide6.QtCore import QTimer

    from qarac_gui.core import paths
    began = time.monotonic()
    report: dict[str, Any] = {"ok": False, "steps": steps}

    def finish(ok: bool, **facts: Any) -> None:
        report.update(facts, ok=ok, seconds=round(time.monotonic() - began, 1))
        print(json.dumps(report), flush=True)
        app.exit(0 if ok else 1)

    if not window.open_project(paths.resource_path("demo", "project.toml"), ask=False):
        finish(False, error="the demo project did not open")
        return app.exec()
    window.document.edit(lambda p: setattr(p.train, "max_steps", steps), "train", "self-test length")

    def start_when_checked() -> None:
        if window.jobs.busy or window.checks.pending:
            QTimer.singleShot(100, start_when_checked)
            return
        if window.checks.problems:
            finish(False, error="; ".join(window.checks.problems))
        elif not window.start_run():
            finish(False, error="the run did not start")

    def on_finished(result: Any) -> None:
        from qarac_gui.core.events import RunEnded
        if not isinstance(result, RunEnded) or result.reason != "completed":
            finish(False, error=getattr(result, "message", str(result)))
            return
        try:
            finish(True, **_check_export(Path(result.run_dir) / "export"))
        except Exception as e:          # any failure to load the export fails the test, with its reason
            finish(False, error=f"export check: {type(e).__name__}: {e}")

    window.controller.finished.connect(on_finished)
    QTimer.singleShot(0, start_when_checked)
    QTimer.singleShot(TIMEOUT_MS, lambda: finish(False, error="timed out"))
    code = app.exec()
    window.document.reset()             # nothing to save: the project was the demo's
    if scratch is not None and code == 0:
        shutil.rmtree(scratch, ignore_errors=True)
    return code


def _check_export(export: Path) -> dict[str, Any]:
    from qarac_gui.core.model.threadsafe_import import import_transformers
    import_transformers()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    folders = sorted(p.name for p in export.iterdir() if p.is_dir())
    model = AutoModelForSequenceClassification.from_pretrained(export / "sentiment")
    tokenizer = AutoTokenizer.from_pretrained(export / "sentiment")
    logits = model(**tokenizer(["a self-test sentence"], return_tensors="pt")).logits
    if tuple(logits.shape) != (1, 2):
        raise ValueError(f"the sentiment export gives logits of shape {tuple(logits.shape)}, not (1, 2)")
    return {"exported": folders, "labels": model.config.id2label, "python": sys.version.split()[0]}
