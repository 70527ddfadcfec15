"""The multi-task batch stream: which rows of which task make up each micro-batch.

It deals in row indices only (no tensors), so its whole state is a few integers and one RNG state that go into
every checkpoint: a resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random


class TaskStream:
    def __init__(self, sizes: dict[str, int], batch_sizes: dict[str, int], mixing: str,
                 probabilities: dict[str, float], seed: int) -> None:
        self.names = list(sizes)
        self.sizes = sizes
        self.batch_sizes = batch_sizes
        self.mixing = mixing
        self.weights = [probabilities[n] for n in self.names]
        self.seed = seed
        self._draw_rng = random.Random(seed)
        self._turn = 0                               # round_robin position
        self.epoch = {n: 0 for n in self.names}
        self.pos = {n: 0 for n in self.names}
        self._order = {n: self._permutation(n, 0) for n in self.names}

    def _permutation(self, name: str, epoch: int) -> list[int]:
        # Derived from (seed, task, epoch) alone, so the checkpoint need not store the order itself.
        order = list(range(self.sizes[name]))
        random.Random(f"{self.seed}/{name}/{epoch}").shuffle(order)
        return order

    def batch(self, name: str) -> list[int]:
        """The next batch of one task; a task that runs out starts its next epoch (smaller datasets cycle)."""
        if self.pos[name] >= self.sizes[name]:
            self.epoch[name] += 1
            self.pos[name] = 0
            self._order[name] = self._permutation(name, self.epoch[name])
        start = self.pos[name]
        end = min(start + self.batch_sizes[name], self.sizes[name])
        self.pos[name] = end
        return self._order[name][start:end]

    def draw(self) -> list[tuple[str, list[int]]]:
        """One micro-batch's worth: a batch of every task (all_tasks) or of one chosen task."""
        if self.mixing == "all_tasks":
            return [(n, self.batch(n)) for n in self.names]
        if self.mixing == "round_robin":
            name = self.names[self._turn % len(self.names)]
            self._turn += 1
        else:
            name = self._draw_rng.choices(self.names, weights=self.weights)[0]
        return [(name, self.batch(name))]

    def epochs_done(self, name: str) -> float:
        return self.epoch[name] + self.pos[name] / max(1, self.sizes[name])

    def state_dict(self) -> dict:
        version, internal, gauss = self._draw_rng.getstate()
        return {"epoch": dict(self.epoch), "pos": dict(self.pos), "turn": self._turn,
                "rng": [version, list(internal), gauss], "sizes": dict(self.sizes)}

    def load_state_dict(self, state: dict) -> None:
        if state["sizes"] != self.sizes:
            raise ValueError("the training data changed since the checkpoint was written "
                             f"(rows then: {state['sizes']}, now: {self.sizes}); resume needs the same data")
        self.epoch = dict(state["epoch"])
        self.pos = dict(state["pos"])
        self._turn = state["turn"]
        version, internal, gauss = state["rng"]
        self._draw_rng.setstate((version, tuple(internal), gauss))
        self._order = {n: self._permutation(n, self.epoch[n]) for n in self.names}
