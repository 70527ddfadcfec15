"""Start, pause, resume and stop; progress with step, epoch, ETA and speed; what blocks Start."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunPanel(QWidget):
    """Run control and progress."""

    start_clicked = Signal()
    pause_clicked = Signal()
    resume_clicked = Signal()
    stop_clicked = Signal()

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
        self.pause_button.setToolTip("Hold training after the current step; the model stays loaded")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resume_button")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stop_button")
        self.stop_button.setToolTip("Stop after the current step and save a checkpoint to continue from later")
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
        self.problems.setStyleSheet("color: #d04040;")
        layout.addWidget(self.problems)
        self.total = 0
        self.set_state(running=False, paused=False, problems=[])

    def set_state(self, running: bool, paused: bool, problems: list[str]) -> None:
        blocked = bool(problems) and not running
        self.start_button.setEnabled(not running and not problems)
        self.pause_button.setVisible(not paused)
        self.pause_button.setEnabled(running and not paused)
        self.resume_button.setVisible(paused)
        self.resume_button.setEnabled(running and paused)
        self.stop_button.setEnabled(running)
        if blocked:
            shown = problems[:6]
            more = f"\n… and {len(problems) - 6} more" if len(problems) > 6 else ""
            self.problems.setText("Fix before starting:\n" + "\n".join(f"• {p}" for p in shown) + more)
        else:
            self.problems.setText("")
        self.start_button.setToolTip("\n".join(problems) if blocked else
                                     "Train every task together on the shared encoder (Ctrl+R)")

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def start_run(self, total_steps: int, start_step: int) -> None:
        self.total = total_steps
        self.progress.setRange(0, max(1, total_steps))
        self.progress.setValue(start_step)

    def show_busy(self, text: str) -> None:
        self.progress.setRange(0, 0)          # an indeterminate bar while loading and tokenising
        self.status.setText(text)

    def show_step(self, step: int, epoch: float, samples_per_s: float, elapsed_s: float, done_here: int) -> None:
        self.progress.setValue(step)
        remaining = self.total - step
        eta = elapsed_s / done_here * remaining if done_here > 0 else 0.0
        self.status.setText(f"Step {step} of {self.total} · epoch {epoch:.2f} · {samples_per_s:.1f} samples/s · "
                            f"elapsed {format_duration(elapsed_s)} · ETA {format_duration(eta)}")
