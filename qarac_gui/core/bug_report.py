"""Errors nobody foresaw: the message a user sees says it is a bug, and the details go to a log to attach to a bug
report. Every error a user can cause or fix is a UserError instead, with words of its own."""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

from qarac_gui.core import paths

MAX_LOG_BYTES = 1 * 2**20          # then the older half goes: the newest reports are the ones asked for
_lock = threading.Lock()


def log_path() -> Path:
    return paths.data_dir() / "errors.log"


def record(error: BaseException, where: str) -> Path | None:
    """Append the error and its traceback to the log; returns the log (None if it cannot be written, which must
    not hide the error itself)."""
    path = log_path()
    entry = (f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} in {where} ---\n"
             + "".join(traceback.format_exception(error)))
    try:
        with _lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size > MAX_LOG_BYTES:
                text = path.read_text(encoding="utf-8", errors="replace")
                path.write_text(text[len(text) // 2:], encoding="utf-8")
            with open(path, "a", encoding="utf-8") as f:
                f.write(entry)
    except OSError:
        return None
    return path
