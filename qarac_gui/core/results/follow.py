"""Following a run from outside its process: the events that reached its events.jsonl since the last look."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from qarac_gui.core import events as ev
from qarac_gui.core.results.history import EVENT_TYPES, LOCK, lock_owner

# Asking a run to stop or pause, from any process that can write into its folder: a stop request ends the run at
# the next step boundary with a checkpoint; a pause request holds it between steps for as long as the file exists.
STOP_REQUEST = "stop-request"
PAUSE_REQUEST = "pause-request"


def parse_event(line: bytes | str) -> ev.TrainEvent | None:
    """One line of events.jsonl as an event; None for a line that is not one (torn, blank, from a newer app)."""
    try:
        raw = json.loads(line)
        return EVENT_TYPES[raw.pop("event")](**raw)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class EventTail:
    """Reads a run's events.jsonl a piece at a time, from where the last read stopped.

    A line the writer has not finished yet stays behind for the next read. The file may not exist yet (the run is
    still loading), and may be replaced or cut shorter (a new run in the same folder): then reading starts over from
    its beginning and `restarts` counts up, so that a display can clear what it showed of the old file.
    """

    def __init__(self, path: str | os.PathLike, from_end: bool = False) -> None:
        """`from_end`: skip what the file holds now (a continued run whose past is already shown)."""
        self.path = Path(path)
        self.offset = 0                 # bytes of the file already read, the kept torn line included
        self.behind = False             # the last read stopped at `most` bytes, before the file's end
        self.restarts = 0
        self._torn = b""
        self._identity: tuple[int, int] | None = None
        if from_end:
            try:
                st = os.stat(self.path)
            except OSError:
                return
            self.offset, self._identity = st.st_size, (st.st_dev, st.st_ino)

    def read(self, final: bool = False, most: int | None = None) -> list[ev.TrainEvent]:
        """The events written since the last read, at most `most` bytes of them (`behind` then says whether more
        is waiting). `final`: the writer has ended, so everything is read, and a last line without its newline is
        taken too, if it is a whole event."""
        try:
            f = open(self.path, "rb")
        except (FileNotFoundError, NotADirectoryError):
            return []
        with f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            if self._identity is not None and (identity != self._identity or st.st_size < self.offset):
                self.offset, self._torn = 0, b""
                self.restarts += 1
            self._identity = identity
            f.seek(self.offset)
            data = f.read() if final or most is None else f.read(most)
        self.offset += len(data)
        self.behind = self.offset < st.st_size
        lines = (self._torn + data).split(b"\n")
        self._torn = lines.pop()        # b"" when the data ended with a newline
        if final and self._torn:
            lines.append(self._torn)
            self._torn = b""
        return [e for e in map(parse_event, lines) if e is not None]


def follow_refusal(run_dir: str | os.PathLike) -> str | None:
    """Why `run_dir` cannot be followed as a run folder; None when it can (an empty folder: a run not started yet)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return f"{run_dir} is not a folder; choose the folder a run writes into (qarac-train's --out)"
    try:
        names = {p.name for p in run_dir.iterdir()}
    except OSError as e:
        return f"{run_dir} cannot be read ({e.strerror or e}); choose a folder you may read"
    if names and not names & {"events.jsonl", "project.toml"}:
        return (f"{run_dir} is not a run folder (it has no events.jsonl or project.toml); choose the folder a run "
                "writes into (qarac-train's --out), not the folder that holds the runs")
    return None


def request_stop(run_dir: str | os.PathLike) -> None:
    """Ask the run in `run_dir` to stop after its current step, with a checkpoint; a paused run is let go first."""
    run_dir = Path(run_dir)
    (run_dir / PAUSE_REQUEST).unlink(missing_ok=True)
    (run_dir / STOP_REQUEST).write_text("", encoding="utf-8")


def request_pause(run_dir: str | os.PathLike, paused: bool) -> None:
    """Hold the run in `run_dir` between steps (True), or let it go on (False)."""
    path = Path(run_dir) / PAUSE_REQUEST
    if paused:
        path.write_text("", encoding="utf-8")
    else:
        path.unlink(missing_ok=True)


def clear_requests(run_dir: str | os.PathLike) -> None:
    """Remove requests left by an earlier run, so that a run continued in the folder does not stop at once."""
    for name in (STOP_REQUEST, PAUSE_REQUEST):
        (Path(run_dir) / name).unlink(missing_ok=True)


def run_is_alive(run_dir: str | os.PathLike) -> bool | None:
    """Whether a process trains the run in `run_dir` now: False once no run holds the folder; None when this machine
    cannot tell (the run trains on another machine, whose lock a shared folder does not carry)."""
    try:
        info = json.loads((Path(run_dir) / LOCK).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return None
    # Asked only while the run's own lock note exists, so the run already holds its lock: this look cannot make a
    # starting run find its folder taken.
    return lock_owner(run_dir) is not None
