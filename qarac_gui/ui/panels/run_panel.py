"""Start, pause, resume and stop; progress with step, epoch, ETA and speed; what blocks Start."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _links(title: str, items: list, prefix: str, limit: int) -> str:
    """A title and one line per item; an item with a place is a link to its field."""
    if not items:
        return ""
    lines = []
    for i, item in enumerate(items[:limit]):
        text = html.escape(getattr(item, "text", str(item)))
        place = getattr(item, "place", None)
        linked = place is not None and place.tab
        lines.append(f"• <a href=\"{prefix}{i}\" style=\"color: inherit;\">{text}</a>" if linked else f"• {text}")
    if len(items) > limit:
        lines.append(f"… and {len(items) - limit} more")
    return f"{html.escape(title)}<br>" + "<br>".join(lines)


class RunPanel(QWidget):
    """Run control and progress."""

    start_clicked = Signal()
    pause_clicked = Signal()
    resume_clicked = Signal()
    stop_clicked = Signal()
    problem_clicked = Signal(object)        # the Place of a clicked problem's field

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("start_button")
        self.start_button.setToolTip("Train every task together on the shared encoder (Ctrl+R)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pause_button")
        self.pause_button.setToolTip("Hold training after the current step; the model stays loaded (Ctrl+P)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resume_button")
        self.resume_button.setToolTip("Go on training the paused run from the step where it stopped (Ctrl+P)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stop_button")
        self.stop_button.setToolTip("Stop after the current step and save a checkpoint to continue from later "
                                    "(Ctrl+.)")
        for button, signal in ((self.start_button, self.start_clicked), (self.pause_button, self.pause_clicked),
                               (self.resume_button, self.resume_clicked), (self.stop_button, self.stop_clicked)):
            button.clicked.connect(signal)
            row.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setObjectName("run_progress")
        self.progress.setFormat("%v / %m steps")
        row.addWidget(self.progress, 1)
        layout.addLayout(row)
        self.status = QLabel("Ready.")
        self.status.setObjectName("run_status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.problems = QLabel("")
        self.problems.setObjectName("start_problems")
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)
        self.problems.setStyleSheet("color: #d04040;")
        self.problems.setToolTip("Click a problem to go to its field")
        self.problems.linkActivated.connect(self._on_problem_link)
        layout.addWidget(self.problems)
        self.advice = QLabel("")
        self.advice.setObjectName("start_advice")
        self.advice.setWordWrap(True)
        self.advice.setTextFormat(Qt.TextFormat.RichText)
        self.advice.setStyleSheet("color: #b07000;")
        self.advice.linkActivated.connect(self._on_problem_link)
        layout.addWidget(self.advice)
        self.total = 0
        self.samples_per_s: float | None = None
        self.blockers: list = []
        self.advised: list = []
        self.running = False
        self.set_state(running=False, paused=False, problems=[])

    def set_state(self, running: bool, paused: bool, problems: list) -> None:
        """`problems`: what blocks Start, as Blocker items (text and the place of its field) or plain strings."""
        blocked = bool(problems) and not running
        self.start_button.setEnabled(not running and not problems)
        self.pause_button.setVisible(not paused)
        self.pause_button.setEnabled(running and not paused)
        self.resume_button.setVisible(paused)
        self.resume_button.setEnabled(running and paused)
        self.stop_button.setEnabled(running)
        self.blockers = list(problems) if blocked else []
        self.problems.setText(_links("Fix before starting:", self.blockers, "p", limit=6))
        self.problems.setVisible(bool(self.blockers))       # an empty label would still take a line
        self.running = running
        self.advice.setVisible(not running and bool(self.advised))
        texts = [getattr(p, "text", p) for p in problems]
        self.start_button.setToolTip("\n".join(texts) if blocked else
                                     "Train every task together on the shared encoder (Ctrl+R)")

    def set_advice(self, advice: list) -> None:
        """What would make the run learn little, though it can start (Blocker items or strings)."""
        self.advised = list(advice)
        self.advice.setText(_links("Before you start:", self.advised, "a", limit=4))
        self.advice.setVisible(not self.running and bool(self.advised))

    def show_plan(self, total_steps: int) -> None:
        """Before a run: the bar says how many optimiser steps Start would train."""
        self.total = total_steps
        self.progress.setRange(0, max(1, total_steps))
        self.progress.setValue(0)

    def end_busy(self) -> None:
        """Leave the indeterminate bar of a job that ended before its first step."""
        if self.progress.maximum() == 0:
            self.progress.setRange(0, max(1, self.total))
            self.progress.reset()

    def _on_problem_link(self, href: str) -> None:
        items = self.blockers if href.startswith("p") else self.advised
        index = int(href[1:])
        if 0 <= index < len(items) and hasattr(items[index], "place"):
            self.problem_clicked.emit(items[index].place)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def start_run(self, total_steps: int, start_step: int) -> None:
        self.total, self.samples_per_s = total_steps, None
        self._set_bar(start_step, max(1, total_steps))

    def _set_bar(self, value: int, maximum: int | None = None) -> None:
        # setValue and setRange repaint the bar at once, and with it every chart waiting for its redraw, which then
        # paints again on its own turn: updates off, the bar's repaint waits for the event loop like theirs.
        self.progress.setUpdatesEnabled(False)
        if maximum is not None:
            self.progress.setRange(0, maximum)
        self.progress.setValue(value)
        self.progress.setUpdatesEnabled(True)

    def show_busy(self, text: str) -> None:
        self.progress.setRange(0, 0)          # an indeterminate bar while loading and tokenising
        self.status.setText(text)

    def show_speed(self, samples_per_s: float) -> None:
        """Measured at each logged step; the status shows the latest until the next one."""
        self.samples_per_s = samples_per_s

    def show_step(self, step: int, epoch: float, elapsed_s: float, done_here: int, status: bool = True) -> None:
        """The bar at `step`; unless `status` is False (a pause's words stay), the status line with the ETA."""
        self._set_bar(step)
        if not status:
            return
        eta = elapsed_s / done_here * (self.total - step) if done_here > 0 else 0.0
        speed = f" · {self.samples_per_s:.1f} samples/s" if self.samples_per_s is not None else ""
        self.status.setText(f"Step {step} of {self.total} · epoch {epoch:.2f}{speed} · "
                            f"elapsed {format_duration(elapsed_s)} · ETA {format_duration(eta)}")
