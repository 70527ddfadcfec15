"""Runs in other processes, shown by the window: a run folder followed while a qarac-train started by hand writes
it, and Start training in child processes (torchrun for several), with Stop asked through the run folder."""

import os
import signal
import subprocess
import sys

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog, QMessageBox

from qarac_gui.core.events import Progress, RunEnded, RunStarted, StepLogged, event_to_json
from qarac_gui.core.project.config import load_project, save_project
from qarac_gui.core.results import follow
from qarac_gui.core.results.history import read_events
from qarac_gui.ui import run_follower
from tests.gui import LONG, click, menu_action, settled
from tests.ui.test_progress_window import project_file

pytestmark = pytest.mark.usefixtures("torch_threads", "no_dialogs")
SHOTS = os.environ.get("QARAC_TEST_SCREENSHOTS")     # a folder: the window is saved there while it follows


def logged(run_dir):
    return [e for e in read_events(run_dir) if isinstance(e, StepLogged)]


def steps_shown(w):
    series = w.charts.loss.series.get("sentiment")
    return [] if series is None else [int(x) for x in series.x]


def choose_folder(monkeypatch, folder):
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))


def step(n):
    return StepLogged(n, n / 10, {"sentiment": 1.0 / n}, 1e-4, 1e-3, 50.0, 0.1 * n)


def started():
    return RunStarted("r", 10, 0, {"sentiment": {"kind": "classification"}},
                      {"steps": [1, 10], "encoder": [1e-4, 1e-5], "heads": [1e-3, 1e-4]}, "cpu", "fp32", {}, 10, 12)


def test_a_followed_log_keeps_torn_lines_starts_over_when_replaced_and_ends_with_the_run(qtbot, window, tmp_path,
                                                                                         monkeypatch):
    w = window
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    choose_folder(monkeypatch, run_dir)
    menu_action(w, "File", "Follow a run folder…").trigger()
    assert w.controller.running and w.controller.following_elsewhere
    assert not w.run_panel.start_button.isEnabled() and w.run_panel.stop_button.isEnabled()
    log = run_dir / "events.jsonl"
    second = event_to_json(step(2)) + "\n"
    with open(log, "w", encoding="utf-8") as f:            # the writer is half-way through its third line
        f.write(event_to_json(started()) + "\n" + event_to_json(step(1)) + "\n" + second[:25])
    qtbot.waitUntil(lambda: w.charts.loss_points("sentiment") == 1, timeout=LONG)
    assert w.run_panel.progress.maximum() == 10 and w.run_panel.progress.value() == 1
    with open(log, "a", encoding="utf-8") as f:
        f.write(second[25:] + event_to_json(step(3)) + "\n")
    qtbot.waitUntil(lambda: w.charts.loss_points("sentiment") == 3, timeout=LONG)
    assert steps_shown(w) == [1, 2, 3]                     # the torn line came whole, once

    fresh = run_dir / "fresh.jsonl"                        # a new run in the same folder replaces the log
    fresh.write_text(event_to_json(started()) + "\n" + event_to_json(step(1)) + "\n", encoding="utf-8")
    os.replace(fresh, log)
    qtbot.waitUntil(lambda: steps_shown(w) == [1], timeout=LONG)

    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
        with open(log, "a", encoding="utf-8") as f:
            f.write(event_to_json(step(2)) + "\n" + event_to_json(RunEnded(2, "stopped", "", str(run_dir))) + "\n")
    assert ended.args[0] == RunEnded(2, "stopped", "", str(run_dir))
    assert not w.controller.running and w.run_panel.status.text().startswith("Stopped")
    assert w.charts.loss_points("sentiment") == 2
    assert not (run_dir / follow.STOP_REQUEST).exists()    # following alone asks nothing of the run


def test_pause_and_stop_of_a_followed_run_are_files_in_its_folder_and_letting_go_leaves_it_running(
        qtbot, window, tmp_path, monkeypatch):
    w = window
    choose_folder(monkeypatch, tmp_path)
    (tmp_path / "events.jsonl").write_text(event_to_json(Progress("load", "Loading")) + "\n", encoding="utf-8")
    menu_action(w, "File", "Follow a run folder…").trigger()
    click(qtbot, w.run_panel.pause_button)
    assert (tmp_path / follow.PAUSE_REQUEST).exists() and w.controller.paused
    click(qtbot, w.run_panel.resume_button)
    assert not (tmp_path / follow.PAUSE_REQUEST).exists() and not w.controller.paused
    click(qtbot, w.run_panel.stop_button)
    assert (tmp_path / follow.STOP_REQUEST).exists() and w.controller.running     # it ends when the run says so
    with qtbot.waitSignal(w.controller.finished, timeout=LONG):
        menu_action(w, "File", "Stop following the run").trigger()
    assert not w.controller.running and "goes on" in w.run_panel.status.text()
    assert menu_action(w, "File", "Follow a run folder…")


def test_a_folder_that_holds_runs_is_refused_with_words(qtbot, window, tmp_path, monkeypatch):
    (tmp_path / "one-run").mkdir()
    choose_folder(monkeypatch, tmp_path)
    menu_action(window, "File", "Follow a run folder…").trigger()
    assert not window.controller.running
    box = window.findChild(QMessageBox, "error_dialog")
    assert box is not None and box.isVisible()
    assert "not a run folder" in box.text() and "--out" in box.text()
    box.close()


# A stand-in for a training process that keeps the run folder's contract without torch: it logs a step every few
# hundredths of a second until a stop request appears, then ends as a stopped run.
STAND_IN = """
import sys, time
from pathlib import Path
from qarac_gui.core.events import RunEnded, RunStarted, StepLogged, event_to_json
run_dir, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "fail":
    print("  Loading the model", file=sys.stderr)
    print("error: reviews.csv: file not found; check the path", file=sys.stderr)
    sys.exit(1)
if mode == "slow start":
    time.sleep(600)                     # never makes its folder: the window ends it
run_dir.mkdir(parents=True, exist_ok=True)
log = open(run_dir / "events.jsonl", "a", encoding="utf-8")
def emit(event):
    log.write(event_to_json(event) + "\\n")
    log.flush()
emit(RunStarted(str(run_dir), 1000, 0, {"sentiment": {"kind": "classification"}}, {}, "cpu", "fp32", {}, 1, 1))
step = 0
while not (run_dir / "stop-request").exists() and step < 100_000:
    step += 1
    emit(StepLogged(step, step / 100, {"sentiment": 1.0 / step}, 1e-4, 1e-3, 50.0, 0.03 * step))
    time.sleep(0.03)
emit(RunEnded(step, "stopped", "", str(run_dir)))
sys.exit(130)
"""


def launch_stand_in(w, tmp_path, mode):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN, encoding="utf-8")
    run_dir = tmp_path / "run"
    w.controller.launch([sys.executable, str(script), str(run_dir), mode], run_dir)
    return run_dir


def test_closing_the_window_during_a_launched_run_stops_it_through_its_folder_then_closes(qtbot, window, tmp_path,
                                                                                          monkeypatch):
    w = window
    run_dir = launch_stand_in(w, tmp_path, "train")
    assert not w.actions_by_name["unfollow"].isEnabled()        # the window's own run: it is stopped, not let go
    qtbot.waitUntil(lambda: w.charts.loss_points("sentiment") >= 2, timeout=LONG)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: asked.append(args[1]) or
                        QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
        w.close()
        assert asked == ["A run is in progress"]
        assert w.isVisible() and (run_dir / follow.STOP_REQUEST).exists()   # open until the run has stopped
    end = ended.args[0]
    assert isinstance(end, RunEnded) and end.reason == "stopped"
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=LONG)
    # every logged step is drawn (the log is throttled to a few lines a second, so the last may precede the stop)
    assert w.charts.loss_points("sentiment") == len(logged(run_dir)) and logged(run_dir)[-1].step <= end.step


def test_a_child_that_fails_says_why_and_keeps_its_stderr_for_the_details(qtbot, window, tmp_path):
    w = window
    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
        launch_stand_in(w, tmp_path, "fail")
    failure = ended.args[0]
    assert isinstance(failure, run_follower.ProcessFailure)
    assert failure.message == "The training process ended with exit code 1: reviews.csv: file not found; check the path"
    box = w.findChild(QMessageBox, "error_dialog")
    assert box is not None and box.isVisible() and box.text() == failure.message
    assert "Loading the model" in box.detailedText()
    assert not w.controller.running
    box.close()


def test_stop_while_the_child_is_still_starting_ends_it_without_a_failure(qtbot, window, tmp_path):
    w = window
    run_dir = launch_stand_in(w, tmp_path, "slow start")
    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
        click(qtbot, w.run_panel.stop_button)
    assert ended.args[0] == RunEnded(0, "stopped", "stopped before training began", str(run_dir))
    assert not run_dir.exists()                     # no request file made a folder the run would find taken
    assert w.findChild(QMessageBox, "error_dialog") is None


@pytest.mark.slow
def test_following_a_run_started_by_hand_shows_its_charts_live_and_its_end(qtbot, window, tiny_bert, tmp_path,
                                                                           monkeypatch):
    w = window
    project = project_file(tmp_path, tiny_bert, 100_000, 1)     # it cannot finish while the test looks
    run_dir = tmp_path / "by-hand"
    run_dir.mkdir()                                  # made before the run starts: the window waits for its log
    choose_folder(monkeypatch, run_dir)
    menu_action(w, "File", "Follow a run folder…").trigger()
    assert "Waiting" in w.run_panel.status.text()
    with open(tmp_path / "stderr.txt", "wb") as err:
        child = subprocess.Popen([sys.executable, "-m", "qarac_gui.cli", str(project), "--out", str(run_dir)],
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        qtbot.waitUntil(lambda: w.charts.loss_points("sentiment") >= 3, timeout=LONG)
        assert len(w.charts.applied_lr()[0]) == w.charts.loss_points("sentiment")
        assert w.controller.running and w.run_panel.progress.value() >= 3
        assert "Step" in w.run_panel.status.text()
        if SHOTS:
            w.charts.flush()
            w.grab().save(os.path.join(SHOTS, "following-a-run.png"))
        with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
            child.send_signal(signal.SIGINT)         # Ctrl-C where it was started: it stops with a checkpoint
        assert child.wait(timeout=LONG / 1000) == 130
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    end = ended.args[0]
    assert isinstance(end, RunEnded) and end.reason == "stopped"
    assert w.run_panel.status.text().startswith(f"Stopped; a checkpoint was saved (Run > Continue a stopped run) "
                                                f"at step {end.step}")
    # every logged step is drawn (the log is throttled to a few lines a second, so the last may precede the stop)
    assert w.charts.loss_points("sentiment") == len(logged(run_dir)) and logged(run_dir)[-1].step <= end.step
    assert w.run_panel.progress.value() == end.step
    assert list((run_dir / "checkpoints").glob(f"step-{end.step:08d}"))
    assert not w.controller.running and w.last_run_dir == run_dir


def start_in_processes(qtbot, w, path, processes):
    assert w.open_project(path)
    qtbot.waitUntil(lambda: settled(w) and w.run_panel.start_button.isEnabled(), timeout=LONG)
    w.processes_spin.setValue(processes)


@pytest.mark.slow
def test_a_failing_torchrun_child_says_why_with_its_stderr_in_the_details(qtbot, window, tiny_bert, tmp_path):
    w = window
    path = project_file(tmp_path, tiny_bert, 4, 1)
    start_in_processes(qtbot, w, path, 2)
    (tmp_path / "reviews.csv").unlink()                 # the data disappears after the window checked it
    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
        click(qtbot, w.run_panel.start_button)
    failure = ended.args[0]
    assert isinstance(failure, run_follower.ProcessFailure)
    assert "reviews.csv" in failure.message and "file not found" in failure.message
    assert "torch.distributed" in failure.details or "torchrun" in failure.details or "rank" in failure.details
    box = w.findChild(QMessageBox, "error_dialog")
    assert box is not None and box.isVisible() and "file not found" in box.text()
    assert "file not found" in box.detailedText()
    assert any("-m torch.distributed.run --standalone --nproc-per-node=2 --shutdown-timeout=600" in line
               for line in w.log.lines())
    assert not w.controller.running and w.isVisible()
    box.close()


@pytest.mark.slow
def test_start_in_two_processes_shows_the_run_live_stops_it_through_its_folder_and_continues_it(
        qtbot, window, tiny_bert, tmp_path):
    w = window
    start_in_processes(qtbot, w, project_file(tmp_path, tiny_bert, 100_000, 1), 2)  # too long to end by itself
    seen = []

    def pause_then_stop(batch):             # Pause at the first step shown; Stop once the run says it holds
        for e in batch:
            if isinstance(e, StepLogged) and not seen:
                assert w.controller.running          # shown while it trains, not replayed after
                click(qtbot, w.run_panel.pause_button)
                seen.append(("pause asked", (w.last_run_dir / follow.PAUSE_REQUEST).exists()))
            elif isinstance(e, Progress) and e.phase == "paused" and len(seen) == 1:
                click(qtbot, w.run_panel.stop_button)
                seen.append((e.message, (w.last_run_dir / follow.STOP_REQUEST).exists(),
                             (w.last_run_dir / follow.PAUSE_REQUEST).exists()))
    w.controller.events_received.connect(pause_then_stop)
    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
        click(qtbot, w.run_panel.start_button)
        assert w.controller.following and not w.controller.following_elsewhere
    run_dir = w.last_run_dir
    end = ended.args[0]
    assert isinstance(end, RunEnded), getattr(end, "details", end)
    # asked through the run folder, and nothing was killed: it held after a step, then stopped there
    assert seen == [("pause asked", True), (f"Paused after step {end.step}", True, False)]
    assert end.reason == "stopped" and end.step > 0
    assert [p.name for p in (run_dir / "checkpoints").glob("step-*")] == [f"step-{end.step:08d}"]
    assert w.charts.loss_points("sentiment") == len(logged(run_dir)) > 0
    assert w.run_panel.progress.value() == end.step and w.run_panel.status.text().startswith("Stopped")
    assert any("--standalone --nproc-per-node=2 --shutdown-timeout=600 -m qarac_gui.cli" in line
               for line in w.log.lines())
    assert list(run_dir.glob("events*.jsonl")) == [run_dir / "events.jsonl"]       # rank 0 alone writes

    w.controller.events_received.disconnect(pause_then_stop)
    saved = load_project(run_dir / "project.toml")
    saved.train.max_steps = last = end.step + 3          # a few more steps, as a user may allow a stopped run
    save_project(saved, run_dir / "project.toml")
    with qtbot.waitSignal(w.controller.finished, timeout=LONG) as ended:
        assert w.start_run(run_dir)                                     # Run > Continue a stopped run
    end = ended.args[0]
    assert isinstance(end, RunEnded) and end.reason == "completed", getattr(end, "details", end)
    assert not (run_dir / follow.STOP_REQUEST).exists()     # the request that ended it did not end its sequel
    steps = [e.step for e in logged(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == last    # the sequel from the stop on, each step once
    assert w.charts.loss_points("sentiment") == len(steps)      # its past replayed, then only what is new
    assert w.run_panel.status.text().startswith(f"Finished at step {last}") and (run_dir / "export").is_dir()
    assert w.run_panel.progress.value() == last
    assert not w.controller.running and w.run_panel.start_button.isEnabled()


def test_the_commands_that_start_a_run_elsewhere(tmp_path, monkeypatch):
    project, run_dir = tmp_path / "p.toml", tmp_path / "run"
    assert run_follower.train_command(1, project, run_dir) == [
        sys.executable, "-m", "qarac_gui.cli", str(project), "--out", str(run_dir)]
    assert run_follower.train_command(4, project, run_dir, resume=True, lr_scale=0.5, trust_remote_code=True) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
        f"--shutdown-timeout={run_follower.SHUTDOWN_TIMEOUT_S}", "-m", "qarac_gui.cli", str(project), "--out",
        str(run_dir), "--resume", "--lr-scale", "0.5", "--trust-remote-code"]
    # a bundled app has no python: its executable runs torchrun, and qarac-train beside it is each rank's program
    bundle = tmp_path / "bundle"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle / "qarac-gui"))
    train = str(bundle / ("qarac-train.exe" if os.name == "nt" else "qarac-train"))
    assert run_follower.train_command(2, project, run_dir) == [
        str(bundle / "qarac-gui"), "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        f"--shutdown-timeout={run_follower.SHUTDOWN_TIMEOUT_S}", "--no-python", train, str(project), "--out",
        str(run_dir)]
    assert run_follower.train_command(1, project, run_dir) == [train, str(project), "--out", str(run_dir)]


def test_a_failed_process_is_told_by_its_own_last_error_line():
    torchrun_tail = ("  Loading the model\nerror: data.csv: file not found; check the path\n"
                     "[rank1]: error: unexpected RuntimeError: Connection closed by peer (a bug in qarac_gui)\n"
                     "Traceback (most recent call last):\n"
                     "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n  error_file: <N/A>\n")
    assert run_follower.failure_message(torchrun_tail, 1) == (
        "The training process ended with exit code 1: data.csv: file not found; check the path")
    assert run_follower.failure_message("Segmentation fault\n", None) == (
        "The training process crashed: Segmentation fault")
    assert "said nothing" in run_follower.failure_message("", 2)


def test_a_long_log_is_read_and_shown_in_turns_and_ends_after_its_last_event(qtbot, tmp_path, monkeypatch):
    """A run followed long after it began: 20,000 logged steps are read a piece at a time and handed on in chunks
    (the event loop free between them), never all at once; the run ends once its last step is shown."""
    from qarac_gui.ui.worker import DRAIN_LIMITS
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    n = 20_000
    lines = [event_to_json(started())] + [event_to_json(step(i)) for i in range(1, n + 1)]
    lines.append(event_to_json(RunEnded(n, "completed", "", str(run_dir))))
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    controller = run_follower.WindowRunController()
    reads, chunks, order = [], [], []
    real_read = follow.EventTail.read

    def counted_read(self, *args, **kwargs):
        got = real_read(self, *args, **kwargs)
        reads.append(len(got))
        return got

    monkeypatch.setattr(follow.EventTail, "read", counted_read)
    turns = [0]                     # turns of the event loop: a zero timer fires once each
    ticker = QTimer()
    ticker.setInterval(0)
    ticker.timeout.connect(lambda: turns.__setitem__(0, turns[0] + 1))
    ticker.start()
    at, running = [], []
    controller.events_received.connect(lambda events: (chunks.append(len(events)), order.extend(events),
                                                       at.append(turns[0]), running.append(controller.running)))
    controller.finished.connect(lambda result: order.append("finished"))
    with qtbot.waitSignal(controller.finished, timeout=60_000):
        controller.follow(run_dir)
    ticker.stop()
    steps = [e.step for e in order if isinstance(e, StepLogged)]
    assert steps == list(range(1, n + 1)) and order[-1] == "finished" and isinstance(order[-2], RunEnded)
    assert len([r for r in reads if r]) > 10 and max(reads) < n / 10          # the file in pieces
    assert len(chunks) > 10 and max(chunks) <= DRAIN_LIMITS[1]               # shown in chunks
    # each chunk in a turn of its own, the last ones after the log's end was read too, and the run still running
    assert all(b > a for a, b in zip(at, at[1:])) and all(running) and not controller.running
