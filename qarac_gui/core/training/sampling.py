"""The multi-task batch stream: which rows of which task make up each micro-batch.

It deals in row indices only (no tensors), so its whole state is a few integers, one RNG state and whether it
groups rows by length, which go into every checkpoint: a resumed run draws exactly the batches the uninterrupted
run would have drawn. Grouping by length needs each row's token count, read once from the tokenised data.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence

# Rows are sorted by length within chunks of this many batches (fewer on small data, see _chunk_batches): large
# enough that a batch finds rows of nearly its own length, small enough that batches stay a random mix.
MEGA_BATCHES = 50


class TaskStream:
    def __init__(self, sizes: dict[str, int], batch_sizes: dict[str, int], mixing: str,
                 probabilities: dict[str, float], seed: int, lengths: dict[str, Sequence[int]] | None = None,
                 grouped: bool = False) -> None:
        """`lengths`: each task's row lengths in tokens (a row of several inputs: its longest), needed when
        `grouped`: then each batch is drawn from rows of similar length, which wastes less of it on padding."""
        self.names = list(sizes)
        self.sizes = sizes
        self.batch_sizes = batch_sizes
        self.mixing = mixing
        self.weights = [probabilities[n] for n in self.names]
        self.seed = seed
        self.lengths = {n: array("q", v) for n, v in (lengths or {}).items()}
        for name, size in sizes.items():
            if name in self.lengths and len(self.lengths[name]) != size:
                raise ValueError(f"task {name}: {len(self.lengths[name])} row lengths for {size} rows")
        self._check_grouping(grouped)
        self.grouped = grouped
        self._draw_rng = random.Random(seed)
        self._turn = 0                               # round_robin position
        self.epoch = {n: 0 for n in self.names}
        self.pos = {n: 0 for n in self.names}
        self._order = {n: self.epoch_order(n, 0) for n in self.names}
        self.stopped: set[str] = set()              # tasks that stopped (eval.task_patience): drawn no more

    def _check_grouping(self, grouped: bool) -> None:
        missing = [n for n in self.names if n not in self.lengths]
        if grouped and missing:
            raise ValueError(f"grouping by length needs the row lengths of {', '.join(missing)}")

    def epoch_order(self, name: str, epoch: int, grouped: bool | None = None) -> list[int]:
        """A task's rows in the order one epoch draws them: consecutive slices of batch_size are its batches.

        Derived from (seed, task, epoch) and the row lengths alone, so the checkpoint need not store the order.
        `grouped` (default: the stream's own setting) asks for the other order, e.g. to compare padding."""
        rng = random.Random(f"{self.seed}/{name}/{epoch}")
        order = list(range(self.sizes[name]))
        rng.shuffle(order)
        if self.grouped if grouped is None else grouped:
            order = grouped_order(order, self.lengths[name], self.batch_sizes[name], rng)
        return order

    def batch(self, name: str) -> list[int]:
        """The next batch of one task; a task that runs out starts its next epoch (smaller datasets cycle)."""
        if self.pos[name] >= self.sizes[name]:
            self.epoch[name] += 1
            self.pos[name] = 0
            self._order[name] = self.epoch_order(name, self.epoch[name])
        start = self.pos[name]
        end = min(start + self.batch_sizes[name], self.sizes[name])
        self.pos[name] = end
        return self._order[name][start:end]

    def draw(self) -> list[tuple[str, list[int]]]:
        """One micro-batch's worth: a batch of every task (all_tasks) or of one chosen task."""
        if self.stopped:
            return self._draw_active()
        if self.mixing == "all_tasks":
            return [(n, self.batch(n)) for n in self.names]
        if self.mixing == "round_robin":
            name = self.names[self._turn % len(self.names)]
            self._turn += 1
        else:
            name = self._draw_rng.choices(self.names, weights=self.weights)[0]
        return [(name, self.batch(name))]

    def stop_task(self, name: str) -> None:
        """Draw `name` no more; the other tasks keep their positions, and a drawing mixing shares the stopped
        task's chance among them in proportion to their own."""
        self.stopped.add(name)

    def active(self) -> list[str]:
        return [n for n in self.names if n not in self.stopped]

    def _draw_active(self) -> list[tuple[str, list[int]]]:
        names = self.active()
        if not names:
            raise RuntimeError("every task has stopped: there is nothing left to draw")
        if self.mixing == "all_tasks":
            return [(n, self.batch(n)) for n in names]
        if self.mixing == "round_robin":
            # the turn counter goes on over the stopped tasks' places, so the turns of the others stay in order
            while self.names[self._turn % len(self.names)] in self.stopped:
                self._turn += 1
            name = self.names[self._turn % len(self.names)]
            self._turn += 1
        else:
            weights = [w for n, w in zip(self.names, self.weights) if n not in self.stopped]
            name = self._draw_rng.choices(names, weights=weights)[0]
        return [(name, self.batch(name))]

    def epochs_done(self, name: str) -> float:
        return self.epoch[name] + self.pos[name] / max(1, self.sizes[name])

    def state_dict(self) -> dict:
        version, internal, gauss = self._draw_rng.getstate()
        return {"epoch": dict(self.epoch), "pos": dict(self.pos), "turn": self._turn,
                "rng": [version, list(internal), gauss], "sizes": dict(self.sizes), "grouped": self.grouped,
                "stopped": sorted(self.stopped)}

    def load_state_dict(self, state: dict) -> None:
        if state["sizes"] != self.sizes:
            raise ValueError("the training data changed since the checkpoint was written "
                             f"(rows then: {state['sizes']}, now: {self.sizes}); resume needs the same data")
        # A run continues drawing as it began, whatever the project says now; checkpoints written before
        # grouping existed drew random batches.
        grouped = bool(state.get("grouped", False))
        self._check_grouping(grouped)
        self.grouped = grouped
        self.epoch = dict(state["epoch"])
        self.pos = dict(state["pos"])
        self._turn = state["turn"]
        version, internal, gauss = state["rng"]
        self._draw_rng.setstate((version, tuple(internal), gauss))
        self._order = {n: self.epoch_order(n, self.epoch[n]) for n in self.names}
        self.stopped = set(state.get("stopped", ()))    # checkpoints written before tasks could stop: none


def _chunk_batches(rows: int, batch_size: int) -> int:
    # As transformers' LengthGroupedSampler: a chunk is at most a quarter of the data, so that even a small task
    # meets other neighbours each epoch instead of the same length-sorted batches every time.
    return max(1, min(MEGA_BATCHES, rows // (4 * batch_size)))


def grouped_order(shuffled: list[int], lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[int]:
    """Rows batched with rows of similar length, still random across batches: the shuffled rows are cut into
    chunks of a few dozen batches, each chunk sorted by length and cut into batches, and the batches shuffled.
    Every batch has batch_size rows except the last, as in a random order."""
    chunk = _chunk_batches(len(shuffled), batch_size) * batch_size
    batches = []
    for i in range(0, len(shuffled), chunk):
        part = sorted(shuffled[i:i + chunk], key=lengths.__getitem__, reverse=True)
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    # Chunks hold whole batches, so only the very last batch can be short: it stays last, where batch() cuts.
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    rng.shuffle(batches)
    return [row for b in batches + short for row in b]


def padding_share(order: Sequence[int], batch_size: int, inputs: Sequence[Sequence[int]]) -> float:
    """The share of padding among the tokens of the batches that `order` makes (each input of a row padded to
    the longest of its batch, as collate does); `inputs`: the row lengths of each tokenised input."""
    import numpy as np
    if not len(order):
        return 0.0
    index = np.asarray(order, dtype=np.int64)
    starts = np.arange(0, len(index), batch_size)
    rows = np.diff(np.append(starts, len(index)))
    padded = total = 0
    for lengths in inputs:
        got = np.asarray(lengths, dtype=np.int64)[index]
        room = int((np.maximum.reduceat(got, starts) * rows).sum())     # each batch padded to its longest row
        total += room
        padded += room - int(got.sum())
    return padded / total if total else 0.0


def padding_report(stream: TaskStream, inputs: dict[str, Sequence[Sequence[int]]]) -> dict[str, dict]:
    """Per task, the share of padded tokens in the current epoch's batches, grouped by length and random, and
    which of them the run draws: cheap host arithmetic on row lengths, never the device."""
    out = {}
    for name in stream.names:
        epoch, size = stream.epoch[name], stream.batch_sizes[name]
        out[name] = {"grouped_by_length": stream.grouped, "padding": {
            way: padding_share(stream.epoch_order(name, epoch, grouped=way == "grouped"), size, inputs[name])
            for way in ("grouped", "random")}}
    return out
