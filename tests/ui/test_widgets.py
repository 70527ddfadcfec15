"""GUI building blocks driven as real objects: the document, background runs and jobs, charts, tasks, forms."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from qarac_gui.core.project import config
from qarac_gui.core.project.config import DataConfig, TaskConfig
from qarac_gui.ui.chart_series import Series
from qarac_gui.ui.charts import SMOOTHING, LiveChart, LossChart
from qarac_gui.ui.document import UNDO_LIMIT, ProjectDocument
from qarac_gui.ui.form import INVALID_STYLE, Binder
from qarac_gui.ui.panels.tasks_panel import TasksPanel, name_problem, unique_name
from qarac_gui.ui.worker import Failure, JobRunner, RunController

TIMEOUT = 5000


def _doc_with_task(folder) -> ProjectDocument:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text("text,label\na,b\n", encoding="utf-8")
    doc = ProjectDocument()
    doc.project.root = folder
    doc.project.tasks.append(TaskConfig(name="sent", data=DataConfig(train="data.csv")))
    return doc


# ---------------------------------------------------------------- ProjectDocument

def test_set_value_undo_redo(qtbot):
    doc = ProjectDocument()
    assert not doc.dirty and not doc.can_undo()
    with qtbot.waitSignal(doc.changed, timeout=TIMEOUT) as blocker:
        doc.set_value("optim.lr", 3e-4)
    assert blocker.args == ["optim"]
    assert doc.project.optim.lr == 3e-4 and doc.dirty and doc.undo_label() == "change of lr"
    doc.set_value("optim.lr", 5e-4, "Learning rate")
    assert doc.undo_label() == "change of Learning rate"
    doc.undo()
    doc.undo()
    assert doc.project.optim.lr == 1e-5 and not doc.dirty and doc.can_redo()
    doc.redo()
    assert doc.project.optim.lr == 3e-4 and doc.dirty and doc.can_redo()
    doc.redo()
    assert doc.project.optim.lr == 5e-4 and not doc.can_redo()


def test_edit_without_change_adds_no_undo_step(qtbot):
    doc = ProjectDocument()
    with qtbot.assertNotEmitted(doc.changed):
        doc.set_value("optim.lr", doc.project.optim.lr)
        doc.edit(lambda p: setattr(p.train, "seed", p.train.seed), "train")
    assert not doc.can_undo() and not doc.dirty


def test_undo_stack_is_limited():
    doc = ProjectDocument()
    for i in range(UNDO_LIMIT + 5):
        doc.set_value("train.seed", 1000 + i)
    undone = 0
    while doc.can_undo():
        doc.undo()
        undone += 1
    assert undone == UNDO_LIMIT and doc.project.train.seed == 1004      # the oldest five steps were dropped


def test_save_round_trip_and_clean(tmp_path):
    doc = _doc_with_task(tmp_path)
    doc.set_value("optim.lr", 2e-5)
    doc.set_value("train.epoch_task", "sent")
    target = tmp_path / "project.toml"
    doc.save(target)
    assert not doc.dirty and doc.path == target.resolve()
    loaded = config.load_project(target, check=False)
    assert config.dumps_project(loaded) == config.dumps_project(doc.project)
    assert loaded.tasks[0].data.train == "data.csv"       # same folder: relative paths stay relative


def test_save_into_other_folder_makes_data_paths_absolute(tmp_path):
    doc = _doc_with_task(tmp_path / "a")
    original = (tmp_path / "a" / "data.csv").resolve()
    target = tmp_path / "b" / "moved.toml"
    target.parent.mkdir()
    doc.save(target)
    loaded = config.load_project(target, check=False)
    assert loaded.tasks[0].data.train == str(original) and not doc.dirty
    assert loaded.resolve(loaded.tasks[0].data.train).resolve() == original


def test_load_unknown_key_names_it(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('version = 1\nname = "x"\n[train]\nmax_stepz = 3\n', encoding="utf-8")
    doc = ProjectDocument()
    with pytest.raises(config.ConfigError, match=r"train\.max_stepz: unknown key"):
        doc.load(path)
    assert doc.path is None


def test_write_autosave_leaves_document_alone(tmp_path):
    doc = _doc_with_task(tmp_path / "proj")
    doc.save(tmp_path / "proj" / "p.toml")
    doc.set_value("train.seed", 5)
    auto = tmp_path / "auto" / "autosave.toml"
    auto.parent.mkdir()
    doc.write_autosave(auto)
    assert doc.path == (tmp_path / "proj" / "p.toml").resolve() and doc.dirty
    assert doc.project.tasks[0].data.train == "data.csv"
    copy = config.load_project(auto, check=False)
    assert copy.train.seed == 5
    assert copy.resolve(copy.tasks[0].data.train).resolve() == (tmp_path / "proj" / "data.csv").resolve()


# ---------------------------------------------------------------- RunController

def _collect(controller):
    got, running = [], []
    controller.events_received.connect(lambda batch: got.append(list(batch)))
    controller.running_changed.connect(running.append)
    return got, running


def test_run_events_arrive_in_order(qtbot):
    rc = RunController()
    got, running = _collect(rc)
    sent = [("step", i) for i in range(50)]

    def fn(emit, stop):
        for e in sent:
            emit(e)
        return "done"

    with qtbot.waitSignal(rc.finished, timeout=TIMEOUT) as blocker:
        rc.start(fn)
        assert rc.running
    assert blocker.args == ["done"]
    assert [e for batch in got for e in batch] == sent
    assert running == [True, False] and not rc.running


@pytest.mark.bug_report
def test_run_exception_becomes_failure(qtbot):
    rc = RunController()

    def fn(emit, stop):
        raise ValueError("exploded at step 3")

    with qtbot.waitSignal(rc.finished, timeout=TIMEOUT) as blocker:
        rc.start(fn)
    failure = blocker.args[0]
    assert isinstance(failure, Failure) and not failure.user_error
    assert failure.message == "ValueError: exploded at step 3"
    assert "exploded at step 3" in failure.details and "Traceback" in failure.details
    assert not rc.running


def test_run_stop_pause_and_double_start(qtbot):
    rc = RunController()
    paused = []
    rc.paused_changed.connect(paused.append)
    entered = threading.Event()

    def fn(emit, stop):
        entered.set()
        while not stop.is_set():
            stop.wait(0.005)
        return "stopped"

    rc.start(fn)
    assert entered.wait(TIMEOUT / 1000)
    with pytest.raises(RuntimeError):
        rc.start(fn)
    rc.set_paused(True)
    assert rc.paused and rc.pause_flag.is_set() and paused == [True]
    with qtbot.waitSignal(rc.finished, timeout=TIMEOUT) as blocker:
        rc.request_stop()
    assert blocker.args == ["stopped"]
    assert not rc.paused and not rc.running and not rc.pause_flag.is_set()


def test_paused_cleared_when_run_ends(qtbot):
    rc = RunController()
    gate = threading.Event()
    paused = []
    rc.paused_changed.connect(paused.append)
    rc.start(lambda emit, stop: gate.wait(TIMEOUT / 1000))
    rc.set_paused(True)
    with qtbot.waitSignal(rc.finished, timeout=TIMEOUT):
        gate.set()
    assert paused == [True, False] and not rc.paused


def test_event_flood_is_coalesced(qtbot):
    rc = RunController()
    got, _ = _collect(rc)
    n = 20_000

    emitted, release = threading.Event(), threading.Event()

    def fn(emit, stop):
        for i in range(n):
            emit(i)
        emitted.set()
        release.wait(TIMEOUT / 1000)

    rc.start(fn)
    assert emitted.wait(TIMEOUT / 1000)          # all sent while this thread ran no event loop, so none drained yet
    assert got == []
    with qtbot.waitSignal(rc.finished, timeout=10_000):
        release.set()
    # In order, in chunks (the event loop gets a turn between them), neither one signal per event nor one for all
    from qarac_gui.ui.worker import DRAIN_CHUNK, DRAIN_LIMITS
    assert [e for batch in got for e in batch] == list(range(n))
    assert len(got[0]) == DRAIN_CHUNK and 10 < len(got) < n // DRAIN_LIMITS[0]
    assert all(len(batch) <= DRAIN_LIMITS[1] for batch in got)


def test_backlog_chunks_fit_the_time_their_events_take(qtbot):
    """Events the window takes 0.1 ms each come 40 to a chunk (DRAIN_BUDGET_S); events it takes 1 us each come in
    chunks of the most allowed: a slow receiver never holds the event loop for long, a fast one is not slowed."""
    from qarac_gui.ui.worker import DRAIN_BUDGET_S, DRAIN_LIMITS
    rc = RunController()
    now = [0.0]
    rc.clock = lambda: now[0]
    cost = [1e-4]
    got = []

    def take(batch):
        got.append(len(batch))
        now[0] += cost[0] * len(batch)

    rc.events_received.connect(take)
    emitted, release = threading.Event(), threading.Event()

    def fn(emit, stop):
        for i in range(20_000):
            emit(i)
        emitted.set()
        release.wait(TIMEOUT / 1000)

    rc.start(fn)
    assert emitted.wait(TIMEOUT / 1000)
    qtbot.waitUntil(lambda: len(got) >= 6, timeout=TIMEOUT)
    assert got[0] == 200 and set(got[1:6]) == {round(DRAIN_BUDGET_S / 1e-4)}
    cost[0] = 1e-6
    with qtbot.waitSignal(rc.finished, timeout=10_000):
        release.set()
    assert sum(got) == 20_000 and DRAIN_LIMITS[1] in got


# ---------------------------------------------------------------- JobRunner

@pytest.mark.bug_report
def test_job_result_and_failure(qtbot):
    jobs = JobRunner()
    busy, results = [], []
    jobs.busy_changed.connect(busy.append)
    jobs.finished.connect(lambda key, result: results.append((key, result)))
    with qtbot.waitSignal(jobs.busy_changed, timeout=TIMEOUT, check_params_cb=lambda b: not b):
        jobs.submit("sum", lambda: sum(range(10)))
    with qtbot.waitSignal(jobs.finished, timeout=TIMEOUT):
        jobs.submit("bad", lambda: 1 / 0)
    assert results[0] == ("sum", 45)
    assert results[1][0] == "bad" and isinstance(results[1][1], Failure)
    assert "ZeroDivisionError" in results[1][1].message
    assert busy[:2] == [True, False]
    qtbot.waitUntil(lambda: not jobs.busy, timeout=TIMEOUT)


def test_newer_job_makes_older_stale(qtbot):
    jobs = JobRunner()
    results = []
    jobs.finished.connect(lambda key, result: results.append((key, result)))
    gate, started = threading.Event(), threading.Event()

    def first():
        started.set()
        gate.wait(TIMEOUT / 1000)
        return "first"

    jobs.submit("model", first)
    assert started.wait(TIMEOUT / 1000)
    with qtbot.waitSignal(jobs.finished, timeout=TIMEOUT):
        jobs.submit("model", lambda: "second")
    assert results == [("model", "second")] and jobs.busy
    with qtbot.waitSignal(jobs.busy_changed, timeout=TIMEOUT, check_params_cb=lambda b: not b):
        gate.set()
    assert results == [("model", "second")]          # the first job ended, but its result is stale


# ---------------------------------------------------------------- charts

def test_series_grows_past_capacity():
    s = Series()
    values = np.arange(1000, dtype=float)
    for v in values:
        s.append(v, v * 2)
    assert s.size == 1000
    np.testing.assert_array_equal(s.x, values)
    np.testing.assert_array_equal(s.y, values * 2)


def test_series_append_after_empty_set():
    s = Series()
    s.set([], [])
    s.append(1.0, 2.0)
    assert list(s.x) == [1.0] and list(s.y) == [2.0]


def test_live_chart_flush_puts_data_in_curve(qtbot):
    chart = LiveChart("Metric", "value")
    qtbot.addWidget(chart)
    for i in range(5):
        chart.append("acc", i, i / 10)
    x, _ = chart.curves["acc"].getOriginalDataset()
    assert x is None or len(x) == 0                      # nothing drawn before flush
    chart.flush()
    x, y = chart.curves["acc"].getOriginalDataset()
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(y, [0, 0.1, 0.2, 0.3, 0.4])


def test_loss_chart_smoothing_and_visibility(qtbot):
    chart = LossChart()
    qtbot.addWidget(chart)
    losses = [2.0, 1.0, 4.0, 0.5]
    for step, loss in enumerate(losses, 1):
        chart.append_loss("sent", step, loss)
    chart.append_loss("ner", 1, 3.0)
    chart.flush()
    assert chart.tasks() == ["sent", "ner"]
    expected, ema = [], 0.0
    for n, loss in enumerate(losses, 1):            # debiased, as TensorBoard smooths
        ema = SMOOTHING * ema + (1 - SMOOTHING) * loss
        expected.append(ema / (1 - SMOOTHING ** n))
    np.testing.assert_allclose(chart.series["sent (raw)"].y, losses)
    np.testing.assert_allclose(chart.curves["sent"].getOriginalDataset()[1], expected)
    chart.set_task_visible("sent", False)
    assert not chart.curves["sent"].isVisible() and not chart.curves["sent (raw)"].isVisible()
    assert chart.curves["ner"].isVisible()
    chart.set_task_visible("sent", True)
    assert chart.curves["sent"].isVisible() and chart.curves["sent (raw)"].isVisible()


def _loss_chart(qtbot) -> LossChart:
    chart = LossChart()
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    for step in range(1, 20):
        chart.append_loss("sent", step, 1 / step)
    return chart


def test_chart_export_png(qtbot, tmp_path):
    _loss_chart(qtbot).export_image(tmp_path / "loss.png")
    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_chart_export_svg(qtbot, tmp_path):
    _loss_chart(qtbot).export_image(tmp_path / "loss.svg")
    svg = (tmp_path / "loss.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and "</svg>" in svg and "<path" in svg and "Training loss" in svg


@pytest.mark.slow
def test_live_chart_many_updates(qtbot):
    """Regression guard: many setData calls with event processing in between must not crash PySide."""
    chart = LiveChart("Loss", "loss")
    qtbot.addWidget(chart)
    chart.show()
    n = 20_000
    for i in range(n):
        chart.append("a", i, math.sin(i / 100))
        chart.flush()
        if i % 500 == 0:
            QApplication.processEvents()
    x, y = chart.curves["a"].getOriginalDataset()
    assert len(x) == n and len(y) == n and x[-1] == n - 1


# ---------------------------------------------------------------- TasksPanel

@pytest.fixture
def panel(qtbot):
    p = TasksPanel(ProjectDocument())
    qtbot.addWidget(p)
    return p


def _names(panel):
    return [t.name for t in panel.document.project.tasks]


def test_add_and_duplicate_tasks(panel):
    assert panel.add_task("classification") == "classification"
    assert panel.add_task("classification") == "classification-2"
    assert panel.add_task("span_qa") == "span-qa"
    assert panel.document.project.task("span-qa").head.kind == "span_qa"
    assert [panel.list.item(i).text() for i in range(panel.list.count())] == _names(panel)
    panel.select("classification")
    panel.document.set_value("tasks.0.batch_size", 7)
    panel.document.set_value("tasks.0.head.labels", ["pos", "neg"])
    panel.duplicate_task()
    assert _names(panel) == ["classification", "classification-copy", "classification-2", "span-qa"]
    copy = panel.document.project.tasks[1]
    assert copy.batch_size == 7 and copy.head.labels == ["pos", "neg"]
    assert copy.head is not panel.document.project.tasks[0].head


def test_rename_updates_references(panel):
    panel.add_task("classification")
    panel.add_task("regression")
    doc = panel.document
    doc.set_value("train.epoch_task", "classification")
    doc.set_value("eval.metric", "classification/accuracy")
    doc.set_value("export.tasks", ["classification", "regression"])
    panel.select("classification")
    panel.rename_task("new-name")
    p = doc.project
    assert _names(panel) == ["new-name", "regression"] and panel.list.item(0).text() == "new-name"
    assert p.train.epoch_task == "new-name" and p.eval.metric == "new-name/accuracy"
    assert p.export.tasks == ["new-name", "regression"]
    doc.undo()
    assert _names(panel) == ["classification", "regression"]
    assert doc.project.eval.metric == "classification/accuracy"


@pytest.mark.parametrize("bad, message", [
    ("bad name!", "starts with a letter or digit"), ("", "starts with a letter or digit"),
    ("regression", "already a task named 'regression'"), ("REGRESSION", "already a task named"),
    ("con", "'con' is reserved"), ("FULL", "'FULL' is reserved"),
])
def test_rename_rejects_bad_names(panel, monkeypatch, bad, message):
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a, **k: shown.append(text))
    panel.add_task("classification")
    panel.add_task("regression")
    panel.select("classification")
    undo_label = panel.document.undo_label()
    panel.rename_task(bad)
    assert _names(panel) == ["classification", "regression"] and panel.document.undo_label() == undo_label
    assert len(shown) == 1 and message in shown[0]


def test_remove_task_and_undo(panel):
    panel.add_task("classification")
    panel.add_task("regression")
    panel.document.set_value("train.epoch_task", "regression")
    panel.select("regression")
    panel.remove_task()
    assert _names(panel) == ["classification"] and panel.list.count() == 1
    assert panel.document.project.train.epoch_task == ""
    panel.document.undo()
    assert _names(panel) == ["classification", "regression"] and panel.list.count() == 2
    assert panel.document.project.train.epoch_task == "regression"


@pytest.mark.parametrize("base, taken, expected", [
    ("classification", set(), "classification"), ("classification", {"Classification"}, "classification-2"),
    ("x", {"x", "x-2"}, "x-3"), ("con", set(), "con-2"), ("FULL", set(), "FULL-2"),
    ("my task!", set(), "my-task"), ("__", set(), "task"),
])
def test_unique_name(base, taken, expected):
    assert unique_name(base, taken) == expected
    assert name_problem(expected, taken) == ""


@pytest.mark.parametrize("name, problem", [
    ("ok-name_1", ""), ("con", "reserved"), ("Nul", "reserved"), ("full", "reserved"), ("com3", "reserved"),
    ("-x", "starts with a letter"), ("a" * 65, "up to 64"), ("a" * 64, ""), ("dup", "already"), ("DUP", "already"),
])
def test_name_problem(name, problem):
    result = name_problem(name, {"dup"})
    assert (problem in result) if problem else result == ""


# ---------------------------------------------------------------- Binder

def _enter(qtbot, edit, text):
    edit.setText(text)
    edit.setFocus()
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def test_number_field_rejects_and_accepts(qtbot):
    doc = ProjectDocument()
    binder = Binder(doc, "optim")
    edit = binder.number("lr", "learning rate", 1e-9, 1.0)
    qtbot.addWidget(edit)
    binder.refresh()
    assert edit.text() == "1e-05"
    for bad in ("abc", "2", "nan", ""):
        _enter(qtbot, edit, bad)
        assert doc.project.optim.lr == 1e-5 and not doc.can_undo()
        assert edit.styleSheet() == INVALID_STYLE and (repr(bad) if bad else "is empty") in edit.toolTip()
    _enter(qtbot, edit, "3e-5")
    assert doc.project.optim.lr == 3e-05 and edit.styleSheet() == ""
    doc.undo()
    assert doc.project.optim.lr == 1e-5


def test_number_field_default_range_rejects_infinity(qtbot):
    doc = ProjectDocument()
    edit = Binder(doc).number("train.epochs")
    qtbot.addWidget(edit)
    _enter(qtbot, edit, "inf")
    assert doc.project.train.epochs == 3.0 and edit.styleSheet() == INVALID_STYLE


def test_integer_check_choice_commit_through_document(qtbot):
    doc = ProjectDocument()
    binder = Binder(doc)
    seed = binder.integer("train.seed", minimum=0, maximum=1000)
    keep = binder.check("eval.keep_best", "keep best")
    mixing = binder.choice("train.mixing", [(m, m) for m in config.MIXING])
    for w in (seed, keep, mixing):
        qtbot.addWidget(w)
    with qtbot.assertNotEmitted(doc.changed):
        binder.refresh()                                 # showing values commits nothing
    assert (seed.value(), keep.isChecked(), mixing.currentText()) == (42, False, "all_tasks")
    seed.setValue(7)
    keep.setChecked(True)
    mixing.setFocus()
    qtbot.keyClick(mixing, Qt.Key.Key_Down)              # the user picks the next entry
    p = doc.project
    assert (p.train.seed, p.eval.keep_best, p.train.mixing) == (7, True, config.MIXING[1])
    doc.undo()
    assert doc.project.train.mixing == "all_tasks" and doc.project.eval.keep_best
    doc.undo()
    doc.undo()
    assert (doc.project.train.seed, doc.project.eval.keep_best) == (42, False) and not doc.can_undo()
    binder.refresh()
    assert (seed.value(), keep.isChecked(), mixing.currentText()) == (42, False, "all_tasks")


def test_the_training_panel_picks_the_optimiser(qtbot):
    from PySide6.QtWidgets import QGroupBox

    from qarac_gui.ui.panels.training_panel import TrainingPanel
    doc = ProjectDocument()
    panel = TrainingPanel(doc)
    qtbot.addWidget(panel)
    assert "Optimiser" in [box.title() for box in panel.findChildren(QGroupBox)]
    combo = next(f.widget for f in panel.binder.fields if f.key == "optim.optimizer")
    assert [combo.itemText(i) for i in range(combo.count())] == ["AdamW", "NAdam"]
    assert combo.currentText() == "AdamW" and doc.project.optim.optimizer == "adamw"
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)              # the user picks NAdam
    assert doc.project.optim.optimizer == "nadam" and doc.dirty
    assert 'optimizer = "nadam"' in config.dumps_project(doc.project)
    doc.undo()
    assert doc.project.optim.optimizer == "adamw" and combo.currentText() == "AdamW"


def test_the_imports_a_run_needs_are_frozen_out_of_the_garbage_collector_once():
    """A full collection walked every object torch and transformers made (about 300,000: 70-90 ms with the GIL
    held, a stall of the window every few seconds of a run); after import_heavy they are frozen, once."""
    import subprocess
    import sys
    code = ("import gc; from qarac_gui.ui.worker import import_heavy; before = gc.get_freeze_count(); "
            "import_heavy(); first = gc.get_freeze_count(); keep = [object() for _ in range(1000)]; "
            "import_heavy(); print(before, first, gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, first, second = map(int, out.stdout.split())
    assert before == 0 and first > 100_000 and second == first
