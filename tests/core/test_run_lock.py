"""The run lock is the kernel's: one process trains a run at a time, and a dead process holds nothing."""

import json
import os
import signal
import subprocess
import sys

import pytest

from qarac_gui.core.errors import UserError
from qarac_gui.core.results.history import LOCK, lock_owner, lock_run, unlock_run

HOLD = ("import sys, time\nfrom qarac_gui.core.results.history import lock_run\nlock_run(sys.argv[1])\n"
        "print('held', flush=True)\ntime.sleep(600)\n")


def _holder(run_dir):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_cannot_take_a_run_another_one_trains(tmp_path):
    child = _holder(tmp_path)
    try:
        assert lock_owner(tmp_path) == child.pid
        with pytest.raises(UserError, match="is being trained by another process right now"):
            lock_run(tmp_path)
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == child.pid      # its record is untouched
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_killed_process_holds_nothing_even_when_its_record_stays(tmp_path):
    child = _holder(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert (tmp_path / LOCK).is_file()              # the crash left its record: the run counts as interrupted
    assert lock_owner(tmp_path) is None
    lock_run(tmp_path)                              # and the next process may take it at once
    try:
        assert lock_owner(tmp_path) == os.getpid()
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    finally:
        unlock_run(tmp_path)
    assert not (tmp_path / LOCK).exists() and lock_owner(tmp_path) is None


def test_a_record_naming_a_live_process_is_not_a_lock(tmp_path):
    # a reused PID: the record names a process that is alive, but it is not the one that trained this run
    (tmp_path / LOCK).write_text(json.dumps({"pid": os.getppid(), "host": "here"}), encoding="utf-8")
    assert lock_owner(tmp_path) is None
    lock_run(tmp_path)
    unlock_run(tmp_path)
