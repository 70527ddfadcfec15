"""A hang fails the test instead of stalling the suite (e.g. opening a FIFO for reading blocks until a writer
comes, which none will)."""

from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def deadline(seconds: int, what: str = "still waiting"):
    def expired(signum, frame):
        raise TimeoutError(f"{what} after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
