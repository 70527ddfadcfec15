"""Training one model with several processes (torchrun, DistributedDataParallel), and the requests any run takes
from files in its folder.

Under torchrun every process (rank) draws the same batches from the same task stream and trains on its own slice of
each, rows[rank::world]. One gradient all-reduce per optimiser step averages the slices' gradients, each loss
weighted so that the average is the gradient of the whole batch. What the ranks must decide alike (skip a step, stop,
pause, log) travels in a small flags tensor shared with the guard's verdict. Validation is shared out by batch
(evaluation.py) and gathered on rank 0, whose metrics every rank then holds. Without torchrun nothing here makes a
process group: a run in one process is exactly what it was.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

STOP_REQUEST = "stop-request"       # a file in the run folder: stop at the next step boundary, with a checkpoint
PAUSE_REQUEST = "pause-request"     # a file in the run folder: wait between two steps while it exists
POLL_S = 0.25                       # the request files are looked at no more often than this


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def on(self) -> bool:
        """Several processes train this model."""
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Rank 0 writes the run's files; the others only train."""
        return self.rank == 0


SINGLE = World()


def from_env(env: Any = None) -> World:
    """Which process this is, as torchrun says in RANK, WORLD_SIZE and LOCAL_RANK; one process without them."""
    from qarac_gui.core.errors import UserError
    env = os.environ if env is None else env
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        if size <= 1:
            return SINGLE
        world = World(int(env["RANK"]), size, int(env.get("LOCAL_RANK", env["RANK"])))
    except (KeyError, ValueError):
        raise UserError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them); start the "
                        "processes with torchrun, or unset WORLD_SIZE to train in one process") from None
    if not 0 <= world.rank < size:
        raise UserError(f"RANK {world.rank} is not below WORLD_SIZE {size}; start the processes with torchrun")
    return world


def start(device: str = "auto") -> World:
    """Join the process group torchrun prepared (once per process): NCCL when the run trains on CUDA GPUs, gloo on
    CPUs. Returns the one-process World outside torchrun."""
    world = from_env()
    if not world.on:
        return world
    import torch.distributed as dist
    if dist.is_initialized():
        return world
    from qarac_gui.core.errors import UserError
    if device == "mps":
        raise UserError("several processes cannot share Apple's Metal GPU; train in one process, or set "
                        "train.device = \"cpu\" to train on the CPUs with several processes")
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(f"process {world.rank} wants GPU {world.local_rank} but this machine shows "
                            f"{torch.cuda.device_count()}; start at most that many processes per machine "
                            "(torchrun --nproc_per_node)")
        torch.cuda.set_device(world.local_rank)
    # A long timeout: the first rank of each machine downloads and tokenises while the others wait for it.
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    return world


def device_of(world: World, device: torch.device) -> torch.device:
    """Each process its own GPU, cuda:LOCAL_RANK; the CPU where one process would take Apple's GPU."""
    if world.on and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    if world.on and device.type == "mps":
        return torch.device("cpu")
    return device


def barrier(world: World) -> None:
    if world.on:
        import torch.distributed as dist
        dist.barrier()


@contextlib.contextmanager
def local_first(world: World):
    """The first process of each machine runs the block (downloads, tokenising into the shared caches) before the
    others, which then find everything in the caches."""
    if world.on and world.local_rank != 0:
        barrier(world)
    try:
        yield
    finally:
        if world.on and world.local_rank == 0:
            barrier(world)


def peer_left(error: BaseException) -> bool:
    """Whether a collective failed because another process of the run ended (its own error says why)."""
    import torch.distributed as dist
    if isinstance(error, dist.DistError):
        return True
    words = str(error)
    return isinstance(error, RuntimeError) and any(
        w in words for w in ("Connection closed by peer", "Connection reset by peer", "NCCL communicator was aborted",
                             "Broken pipe", "gloo/transport"))


def from_rank_0(world: World, value: Any) -> Any:
    """Rank 0's value (any picklable object) on every rank."""
    if not world.on:
        return value
    import torch.distributed as dist
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def to_rank_0(world: World, value: Any) -> list | None:
    """Every rank's value (any picklable object), in rank order, on rank 0; None on the others."""
    if not world.on:
        return [value]
    import torch.distributed as dist
    box = [None] * world.size if world.writer else None
    dist.gather_object(value, box, dst=0)
    return box


def agree(world: World, flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag set on any rank, on every rank: one small blocking all-reduce (used only while paused)."""
    if not world.on:
        return flags
    import torch.distributed as dist
    shared = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    return [bool(f) for f in shared.tolist()]


def share_any(flags: torch.Tensor) -> None:
    """Set each flag (bool tensor, on the device) where any rank set it; queued on the device, not waited for."""
    import torch.distributed as dist
    shared = flags.to(torch.int32)
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    flags.copy_(shared.bool())


def share_sum(values: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def rank_seed(seed: int, world: World, step: int) -> int:
    """Dropout draws of each rank from their own seed, renewed at each (re)start so that a resumed run on the same
    number of processes draws as the uninterrupted one."""
    return (seed * 1_000_003 + world.rank * 7919 + step * 131 + 17) % (2**63)


# ---------------------------------------------------------------------------------------------------- the slices
def loss_units(batch: dict[str, torch.Tensor], rows: int) -> int:
    """What a task's loss is the mean over: the labelled tokens of token-level labels (masked-LM, token
    classification, generation: -100 marks a token without one), else the rows."""
    labels = batch.get("labels")
    if labels is not None and labels.dim() >= 2 and not labels.is_floating_point():
        return int((labels != -100).sum())
    return rows


def _row_units(batch: dict[str, torch.Tensor], rows: int) -> torch.Tensor:
    labels = batch.get("labels")
    if labels is not None and labels.dim() >= 2 and not labels.is_floating_point():
        return (labels != -100).flatten(1).sum(1)
    return torch.ones(rows, dtype=torch.long)


def take_rows(batch: dict[str, torch.Tensor], index: list[int]) -> dict[str, torch.Tensor]:
    """Some rows of a collated batch (padded as the whole batch was, with the masks it drew)."""
    at = torch.tensor(index, dtype=torch.long)
    out = {k: v.index_select(0, at) for k, v in batch.items() if k != "masked_positions"}
    if "masked_positions" in batch:         # an index into the whole batch's tokens: found again for these rows
        out["masked_positions"] = (out["labels"].flatten() != -100).nonzero().squeeze(1)
    return out


@dataclass
class Slice:
    batch: dict[str, torch.Tensor]
    rows: int               # this rank's rows of the batch (0: it trains on a stand-in row, weighted 0)
    scale: float            # the loss's weight: world * this slice's share of the batch's loss units


def slice_of(batch: dict[str, torch.Tensor], rows: int, world: World) -> Slice:
    """This rank's rows[rank::world] of a batch the whole step collated (so its masks are those one process would
    draw), weighted so that DDP's average of the ranks' gradients is the whole batch's.

    A rank whose slice holds no rows, or none of the loss's tokens, still runs a forward and a backward (the
    gradient all-reduce needs every rank): on one row of the batch, weighted 0."""
    for key, value in batch.items():
        if key != "masked_positions" and value.shape[0] != rows:
            raise ValueError(f"batch entry {key} has {value.shape[0]} rows, not {rows}: it cannot be sliced by row")
    index = list(range(world.rank, rows, world.size))
    total = loss_units(batch, rows)
    mine = take_rows(batch, index) if index else None
    units = loss_units(mine, len(index)) if mine is not None else 0
    if units and total:
        return Slice(mine, len(index), world.size * units / total)
    if not total:           # the whole batch has nothing to learn from: its loss is NaN on every rank, as in one
        return Slice(mine if mine is not None else take_rows(batch, [0]), len(index), 1.0)
    useful = int(torch.nonzero(_row_units(batch, rows))[0])
    return Slice(take_rows(batch, [useful]), 0, 0.0)


# -------------------------------------------------------------------------------------------------- the wrapper
class _Forward(torch.nn.Module):
    """The model's forward returning the loss alone, which DDP follows to find the parameters a task used; with
    `balance` (a task's loss -> what trains, e.g. its learnt uncertainty weighting) the loss and what trains, so
    that DDP sees the parameters `balance` uses as used too."""

    def __init__(self, model: torch.nn.Module, balance: Any = None) -> None:
        super().__init__()
        self.model, self.balance = model, balance

    def forward(self, name: str, batch: dict) -> Any:
        loss = self.model(name, batch).loss
        return loss if self.balance is None else (loss, self.balance(name, loss))


def wrap(model: torch.nn.Module, device: torch.device, balance: Any = None) -> Any:
    """DistributedDataParallel over the model, built while every parameter the run will train requires gradients
    (before the head-only warm-up freezes the encoder: DDP reduces only what required gradients when it was built).

    find_unused_parameters: each task's backward reaches only its own head, and under no_sync the gradients of
    earlier backwards wait in .grad until the step's last backward, whose all-reduce takes them all. Buffers are
    not broadcast before each forward: they are constants here, and that would be a collective per task."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel
    options: dict[str, Any] = {"find_unused_parameters": True}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        options["forward_sync_buffers"] = False
    else:
        options["broadcast_buffers"] = False
    if device.type == "cuda":
        options |= {"device_ids": [device.index], "output_device": device.index}
    return DistributedDataParallel(_Forward(model, balance), **options)


# ------------------------------------------------------------------------------------------------- the requests
class Requests:
    """Stop and pause, asked by the caller's events or by files in the run folder (STOP_REQUEST, PAUSE_REQUEST),
    which a window following the run from outside the process creates. Files are looked at POLL_S apart at most,
    and only by rank 0 (the others learn of them through the shared flags)."""

    def __init__(self, run_dir: Path | None, stop: Any, pause: Any, poll: bool = True) -> None:
        self.run_dir, self._stop, self._pause = run_dir, stop, pause
        self.poll = poll and run_dir is not None
        self._looked = float("-inf")
        self._files = (False, False)

    def _look(self) -> tuple[bool, bool]:
        now = time.monotonic()
        if self.poll and now - self._looked >= POLL_S:
            self._looked = now
            self._files = ((self.run_dir / STOP_REQUEST).exists(), (self.run_dir / PAUSE_REQUEST).exists())
        return self._files

    def look_again(self) -> None:
        """The next question looks at the files again (one was just written)."""
        self._looked = float("-inf")

    def stop(self) -> bool:
        return self._stop.is_set() or self._look()[0]

    def pause(self) -> bool:
        return (self._pause is not None and self._pause.is_set()) or self._look()[1]


def clear_stop_request(run_dir: Path) -> None:
    (run_dir / STOP_REQUEST).unlink(missing_ok=True)
