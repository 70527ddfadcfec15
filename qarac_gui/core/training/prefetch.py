"""The next steps' batches, fetched from Arrow, padded and pinned by a background thread while the device works.

The worker draws from a copy of the task stream, one step ahead of the loop; the loop still draws from the real
stream (whose state the checkpoints keep) and takes the prepared batches only when the worker drew the same rows
and cut them the same way. Anything else (a redo after an out-of-memory error, a worker that failed) is collated
in the loop as before, so the prefetch can change speed but never which rows or masks a step trains on.
"""

from __future__ import annotations

import copy
import queue
import threading
from dataclasses import dataclass
from typing import Any

import torch

from qarac_gui.core.training.distributed import SINGLE, World, slice_of

DEPTH = 2                       # steps prepared ahead: one to take now, one being collated


def micro_seed(seed: int, step: int, micro: int) -> int:
    # Masked-LM masks come from (seed, step, micro-batch), so a resumed run masks exactly as the straight one.
    return (seed * 1_000_003 + step * 131 + micro) % (2**63)


@dataclass
class Piece:
    """One micro-batch: `rows` rows cut from a batch of `of` rows of task `name`, collated on the host. Under
    several processes, `scale` weighs this rank's slice of the batch (see distributed.slice_of)."""
    name: str
    rows: int
    of: int
    batch: dict[str, torch.Tensor]
    scale: float = 1.0


def collate_step(tasks: dict[str, Any], draws: list, step: int, split: int, seed: int, pin: bool,
                 world: World = SINGLE) -> list[Piece]:
    """Every batch a step draws, each cut into `split` micro-batches (more after an out-of-memory error); under
    several processes, this rank's slice of each."""
    if world.on:
        return _slices(tasks, draws, step, seed, pin, world)
    pieces = []
    for micro, draw in enumerate(draws):
        for name, rows in draw:
            data = tasks[name]
            size = -(-len(rows) // split)
            for j in range(0, len(rows), size):
                chunk = rows[j:j + size]
                batch = data.collate(data.train[chunk], micro_seed(seed, step, micro * split + j // size))
                if pin:                 # a copy from pinned memory is truly asynchronous; from pageable it is not
                    batch = {k: v.pin_memory() for k, v in batch.items()}
                pieces.append(Piece(name, len(chunk), len(rows), batch))
    return pieces


def _slices(tasks: dict[str, Any], draws: list, step: int, seed: int, pin: bool, world: World) -> list[Piece]:
    # The whole batch is collated with the seed one process uses, so each row gets the mask it would get there.
    pieces = []
    for micro, draw in enumerate(draws):
        for name, rows in draw:
            data = tasks[name]
            part = slice_of(data.collate(data.train[rows], micro_seed(seed, step, micro)), len(rows), world)
            batch = {k: v.pin_memory() for k, v in part.batch.items()} if pin else part.batch
            pieces.append(Piece(name, part.rows, len(rows), batch, part.scale))
    return pieces


@dataclass
class _Prepared:
    step: int
    split: int
    draws: list
    pieces: list[Piece]


class Prefetcher:
    """Steps first..last prepared ahead by one worker thread; `take` hands them out in order."""

    def __init__(self, tasks: dict[str, Any], stream: Any, grad_accum: int, seed: int, first: int, last: int,
                 split: int, pin: bool, world: World = SINGLE) -> None:
        self.tasks, self.grad_accum, self.seed, self.pin, self.world = tasks, grad_accum, seed, pin, world
        self.split = split          # the worker cuts the batches it prepares next this way
        # The row lengths are only read: shared, not copied
        self._ahead = copy.deepcopy(stream, memo={id(stream.lengths): stream.lengths})
        self._queue: queue.Queue = queue.Queue(maxsize=DEPTH)
        self._closing = threading.Event()
        self._last: _Prepared | None = None
        self._finished = first > last
        self.taken = 0              # steps whose prepared batches were used (the tests read it)
        self._thread = threading.Thread(target=self._work, args=(first, last), name="batch-prefetch", daemon=True)
        if not self._finished:
            self._thread.start()

    def _work(self, first: int, last: int) -> None:
        try:
            for step in range(first, last + 1):
                draws = [self._ahead.draw() for _ in range(self.grad_accum)]
                split = self.split
                pieces = self._collate(draws, step, split)
                if not self._put(_Prepared(step, split, draws, pieces)):
                    return
        except Exception:   # noqa: BLE001 - the loop collates the step itself and meets the error there, in words
            pass
        self._put(None)

    def _put(self, item: _Prepared | None) -> bool:
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def take(self, step: int, draws: list, split: int) -> list[Piece]:
        """The step's micro-batches: the worker's when it prepared exactly these, else collated here and now."""
        self.split = split
        if not self._finished and (self._last is None or self._last.step != step):
            item = self._queue.get()
            if item is None:
                self._finished = True
            else:
                self._last = item
                if item.step == step and item.split == split and item.draws == draws:
                    self.taken += 1
                    return item.pieces
        return self._collate(draws, step, split)

    def _collate(self, draws: list, step: int, split: int) -> list[Piece]:
        if self.world.on:
            return collate_step(self.tasks, draws, step, split, self.seed, self.pin, self.world)
        return collate_step(self.tasks, draws, step, split, self.seed, self.pin)

    def close(self) -> None:
        self._closing.set()
        while True:                 # a worker blocked on a full queue sees the closing flag within 50 ms
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive():
            self._thread.join(timeout=5)
