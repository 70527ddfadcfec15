"""One place turns a run's events into words: the CLI prints and the window's log shows the same line."""

import io

from qarac_gui.cli import TerminalPrinter
from qarac_gui.core.events import CheckpointSaved, EvalDone, ExportDone, RunEnded, StepSkipped, describe

EVENTS = [
    StepSkipped(7, ["sentiment"], 2),
    StepSkipped(8, [], 3),
    EvalDone(10, {"sentiment": {"accuracy": 0.8125, "loss": 0.41}}, 10, 0.8125, "sentiment/accuracy"),
    CheckpointSaved(10, "/runs/x/checkpoints/step-00000010"),
    ExportDone("/runs/x/export", {"sentiment": "/runs/x/export/sentiment"}),
    RunEnded(12, "completed", "", "/runs/x"),
]


def test_the_words_say_what_happened():
    assert describe(EVENTS[0]) == "Step 7 skipped: the loss of sentiment was NaN or infinite (2 in a row)"
    assert describe(EVENTS[1]) == "Step 8 skipped: the gradients were NaN or infinite (3 in a row)"
    assert describe(EVENTS[2]) == "Validation at step 10: sentiment: accuracy 0.8125, loss 0.41"
    assert describe(EVENTS[5]) == "Run completed at step 12"


def test_the_cli_prints_the_same_words():
    out = io.StringIO()
    printer = TerminalPrinter(out)
    for event in EVENTS:
        printer(event)
    assert out.getvalue().splitlines() == [describe(e) for e in EVENTS]


def test_a_failure_is_not_printed_twice_by_the_cli():
    out = io.StringIO()
    TerminalPrinter(out)(RunEnded(3, "failed", "the data file is gone", "/runs/x"))
    assert out.getvalue() == "Run failed at step 3\n"        # the message follows once, as the "error:" line
