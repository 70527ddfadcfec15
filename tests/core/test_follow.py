"""Following a run from outside: its events.jsonl read piece by piece, torn lines kept, and the request files."""

import json
import os
import random
import socket

from qarac_gui.core.events import EvalDone, Progress, RunEnded, RunStarted, StepLogged, event_to_json
from qarac_gui.core.results import follow
from qarac_gui.core.results.follow import EventTail
from qarac_gui.core.results.history import LOCK, lock_run, read_events, unlock_run


def some_events(n=6):
    out = [Progress("load", "Loading the model — “tiny” ✓"),       # not ASCII: torn lines may split a character
           RunStarted("r", 10, 0, {"t": {"kind": "classification"}}, {"steps": [1], "encoder": [1e-4],
                                                                       "heads": [1e-3]},
                      "cpu", "fp32", {}, 10, 12)]
    out += [StepLogged(i, i / 10, {"t": 1.0 / i}, 1e-4, 1e-3, 50.0, 0.1 * i) for i in range(1, n + 1)]
    out += [EvalDone(n, {"t": {"accuracy": 0.5}}, n, 0.5, "t/accuracy"), RunEnded(n, "completed", "", "r")]
    return out


def log_bytes(events):
    return "".join(event_to_json(e) + "\n" for e in events).encode("utf-8")


def test_the_tail_gives_each_event_once_however_the_writes_are_cut(tmp_path):
    events = some_events()
    data = log_bytes(events)
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    rng = random.Random(0)
    seen = []
    with open(path, "wb") as f:
        at = 0
        while at < len(data):
            step = rng.randint(1, 40)           # cuts inside lines, and inside multi-byte characters
            f.write(data[at:at + step])
            f.flush()
            at += step
            seen += tail.read()
    assert seen == events
    assert tail.read() == [] and tail.offset == len(data)


def test_a_torn_last_line_waits_for_the_rest(tmp_path):
    path = tmp_path / "events.jsonl"
    first, second = some_events()[2:4]
    line = event_to_json(second)
    path.write_text(event_to_json(first) + "\n" + line[:17], encoding="utf-8")
    tail = EventTail(path)
    assert tail.read() == [first]
    assert tail.read() == []                    # still torn: nothing new, nothing lost
    with open(path, "a", encoding="utf-8") as f:
        f.write(line[17:] + "\n")
    assert tail.read() == [second]


def test_the_final_read_takes_a_whole_last_line_without_its_newline(tmp_path):
    path = tmp_path / "events.jsonl"
    end = RunEnded(3, "stopped", "", "r")
    path.write_text(event_to_json(end), encoding="utf-8")
    tail = EventTail(path)
    assert tail.read() == []
    assert tail.read(final=True) == [end]


def test_no_file_yet_then_the_file(tmp_path):
    path = tmp_path / "run" / "events.jsonl"       # not even the folder exists while the run loads
    tail = EventTail(path)
    assert tail.read() == [] and tail.offset == 0
    path.parent.mkdir()
    events = some_events(2)
    path.write_bytes(log_bytes(events))
    assert tail.read() == events


def test_a_replaced_or_shortened_file_is_read_again_from_its_start(tmp_path):
    path = tmp_path / "events.jsonl"
    old, new = some_events(4), some_events(1)
    path.write_bytes(log_bytes(old))
    tail = EventTail(path)
    assert tail.read() == old
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(log_bytes(new) * 5)     # longer than the old one: only its identity tells
    os.replace(replacement, path)
    assert tail.read() == new * 5
    assert tail.restarts == 1
    with open(path, "r+b") as f:                    # cut shorter in place (same file)
        f.truncate(0)
        f.write(log_bytes(new[:1]))
    assert tail.read() == new[:1]
    assert tail.restarts == 2


def test_lines_that_are_no_event_are_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    good = some_events(1)[2]
    path.write_text("\n".join(["not json", json.dumps({"event": "FromTheFuture", "x": 1}),
                               json.dumps({"event": "StepLogged", "bad": 1}), "[1, 2]", "",
                               event_to_json(good)]) + "\n", encoding="utf-8")
    assert EventTail(path).read() == [good]


def test_from_end_skips_what_is_there_already(tmp_path):
    path = tmp_path / "events.jsonl"
    old = some_events(2)
    path.write_bytes(log_bytes(old))
    tail = EventTail(path, from_end=True)
    assert tail.read() == []
    later = [StepLogged(9, 0.9, {"t": 0.1}, 1e-4, 1e-3, 50.0, 1.0)]
    with open(path, "ab") as f:
        f.write(log_bytes(later))
    assert tail.read() == later
    assert read_events(tmp_path) == old + later      # the history reads the same file the same way


def test_requests_are_files_in_the_run_folder(tmp_path):
    follow.request_pause(tmp_path, True)
    assert (tmp_path / follow.PAUSE_REQUEST).exists()
    follow.request_pause(tmp_path, False)
    assert not (tmp_path / follow.PAUSE_REQUEST).exists()
    follow.request_pause(tmp_path, True)
    follow.request_stop(tmp_path)                   # a paused run is let go, or it could never reach its stop
    assert (tmp_path / follow.STOP_REQUEST).exists() and not (tmp_path / follow.PAUSE_REQUEST).exists()
    follow.clear_requests(tmp_path)
    assert not any(tmp_path.iterdir())


def test_what_can_be_followed(tmp_path):
    assert follow.follow_refusal(tmp_path) is None                   # empty: a run not started yet
    (tmp_path / "events.jsonl").write_text("", encoding="utf-8")
    assert follow.follow_refusal(tmp_path) is None
    runs = tmp_path / "runs"
    (runs / "a-run").mkdir(parents=True)
    assert "not a run folder" in follow.follow_refusal(runs)
    assert "not a folder" in follow.follow_refusal(tmp_path / "events.jsonl")


def test_whether_the_run_lives(tmp_path):
    assert follow.run_is_alive(tmp_path) is False
    lock_run(tmp_path)
    try:
        assert follow.run_is_alive(tmp_path) is True
    finally:
        unlock_run(tmp_path)
    assert follow.run_is_alive(tmp_path) is False
    # left by a crash on this machine: nobody holds the lock any more
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": socket.gethostname()}), encoding="utf-8")
    (tmp_path / ".running.flock").write_text("", encoding="utf-8")
    assert follow.run_is_alive(tmp_path) is False
    # a run on another machine: its lock does not travel with a shared folder, so nothing can be told
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid"}), encoding="utf-8")
    assert follow.run_is_alive(tmp_path) is None


def test_the_request_files_are_the_ones_the_engine_reads():
    from qarac_gui.core.training import distributed
    assert (follow.STOP_REQUEST, follow.PAUSE_REQUEST) == (distributed.STOP_REQUEST, distributed.PAUSE_REQUEST)
