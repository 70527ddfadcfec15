"""Task balancing beyond fixed weights: learnt uncertainty weights, or the tasks' gradients aggregated by torchjd."""

from __future__ import annotations

import math
from typing import Any

import torch

from qarac_gui.core.errors import UserError
from qarac_gui.core.project.config import AGGREGATORS, Project
from qarac_gui.core.project.keep import trained_tasks
from qarac_gui.core.training.distributed import SINGLE, World, from_rank_0


def add_log_variances(project: Project, model: Any) -> None:
    """uncertainty: one learnt log-variance s_i per task, a parameter of the model (so checkpoints, resume and the
    optimiser take it like any other weight), starting at 0 (each task's factor exp(-s_i) starts at 1)."""
    if project.train.balancing == "uncertainty":
        model.log_variances = torch.nn.ParameterDict(
            {t.name: torch.nn.Parameter(torch.zeros(())) for t in trained_tasks(project)})


def balancing_groups(project: Project, model: Any) -> list[dict]:
    """The optimiser group of the log-variances: their own lr, no weight decay (decay would pull every task's
    factor towards 1), the heads' schedule."""
    variances = getattr(model, "log_variances", None)
    if variances is None:
        return []
    return [{"params": list(variances.values()), "lr": project.train.balancing_lr, "weight_decay": 0.0,
             "is_head": True, "balancing": True}]


def make_balancer(project: Project, model: Any, device: torch.device, world: World = SINGLE) -> Any:
    """What the step loop asks to transform the losses and combine the gradients; None for fixed weights."""
    mode = project.train.balancing
    if mode == "weights":
        return None
    if mode == "uncertainty":       # its log-variances are the model's: DDP reduces them with the rest
        return Uncertainty(model)
    if mode in AGGREGATORS:
        return Aggregation(model, [t.name for t in trained_tasks(project)], mode, device, world)
    raise UserError(f"train.balancing: {mode!r} is not a balancing this app knows")


class Uncertainty:
    """Kendall, Gal & Cipolla (2018), in the form loss_i * exp(-s_i) + s_i for every kind of task: the 1/2 of
    the paper's regression form only rescales a task's whole term, so it is left out; its classification form
    (without the 1/2 on the loss) would give classifiers twice the weight of regressions at the optimum
    (exp(-s_i) = 1 / loss_i here, for every kind)."""

    def __init__(self, model: Any) -> None:
        self.variances = model.log_variances

    def loss(self, name: str, loss: Any) -> Any:
        s = self.variances[name]
        return loss * torch.exp(-s) + s

    def begin(self) -> None:
        pass

    def collect(self, name: str) -> None:
        pass

    def combine(self) -> None:
        pass

    def flush(self) -> tuple[dict[str, float], None]:
        """Each task's factor exp(-s_i) now: read from the device at the log flush only."""
        names = list(self.variances)
        factors = torch.exp(-torch.stack([self.variances[n].detach() for n in names])).tolist()
        return dict(zip(names, factors)), None


def _weighting(mode: str, m: int) -> Any:
    try:
        from torchjd.aggregation import MGDAWeighting, PCGradWeighting, UPGradWeighting
    except ImportError:
        raise UserError(f"train.balancing = {mode!r} needs the torchjd library: pip install "
                        "'torchjd[quadprog-projector]>=0.18'   (or: pip install 'qarac-gui[balancing]')") from None
    if mode == "upgrad":
        try:   # the preference vector of ones: with no conflict UPGrad's result is the plain sum of the gradients
            return UPGradWeighting(pref_vector=torch.ones(m, dtype=torch.float64))
        except ImportError as e:
            raise UserError(f"train.balancing = \"upgrad\" solves a small quadratic program with quadprog: {e}") \
                from None
    if mode == "pcgrad":
        return PCGradWeighting()
    mgda = MGDAWeighting()
    # MGDA gives a convex combination (weights summing to 1); times m, its gradient has the size of a sum, as the
    # other modes', so that the clip threshold and the lr mean the same. The direction is MGDA's.
    return lambda gramian: mgda(gramian) * m


class Aggregation:
    """The gradients of the shared parameters (backbones, poolers, adapters), one row per task in a Jacobian kept
    on the device, combined by a torchjd weighting after the step's last backward; each head keeps its own task's
    plain gradient. Every task's batches add into its row, so gradient accumulation and batches cut after running
    out of memory need nothing more.

    The weighting works on the m x m Gramian of the rows, on the host: the step's only read of the device.

    Under several processes every backward runs without DDP's all-reduce (which would sum the tasks' gradients
    before they are apart): `combine` averages the Jacobian and the heads' gradients over the ranks itself, as DDP
    would have, so every rank weighs the same rows and takes the same step."""

    # the step loop keeps DDP from reducing the gradients of a step: combine() does it
    reduces_itself = True

    def __init__(self, model: Any, tasks: list[str], mode: str, device: torch.device, world: World = SINGLE) -> None:
        self.world = world
        self.tasks, self.index = tasks, {name: i for i, name in enumerate(tasks)}
        self.mode, self.weightings = mode, {len(tasks): _weighting(mode, len(tasks))}
        owners: dict[int, int] = {}
        for head in model.heads.values():
            for q in head.parameters():
                owners[id(q)] = owners.get(id(q), 0) + 1
        # A head's own weights stay out; a weight several heads share, or a head shares with a backbone (a masked-LM
        # decoder tied to the input embeddings, which every task reads), is shared like the encoder
        backbone = {id(q) for q in model.backbones.parameters()}
        self.shared = [q for q in model.parameters()
                       if q.requires_grad and (id(q) in backbone or owners.get(id(q), 0) != 1)]
        shared = {id(q) for q in self.shared}
        self.own = [q for q in model.parameters() if q.requires_grad and id(q) not in shared]
        n = sum(q.numel() for q in self.shared)
        self.jacobian = torch.zeros(len(tasks), n, device=device)
        self.rows: list[list[torch.Tensor]] = []
        for i in range(len(tasks)):
            views, at = [], 0
            for q in self.shared:
                views.append(self.jacobian[i, at:at + q.numel()].view(q.shape))
                at += q.numel()
            self.rows.append(views)
        self.present: set[int] = set()      # the rows of the tasks that trained this step
        self.sums, self.counts, self.cosines = [0.0] * len(tasks), [0] * len(tasks), []

    def loss(self, name: str, loss: Any) -> Any:
        return loss

    def begin(self) -> None:
        self.jacobian.zero_()
        self.present = set()

    def collect(self, name: str) -> None:
        """After a backward of task `name`: its shared gradients move into its row, the .grad left empty."""
        pairs = [(view, q.grad) for view, q in zip(self.rows[self.index[name]], self.shared) if q.grad is not None]
        if pairs:
            torch._foreach_add_([v for v, _ in pairs], [g for _, g in pairs])
            self.present.add(self.index[name])
        for q in self.shared:
            q.grad = None

    def combine(self) -> None:
        """Only the rows of the tasks that trained this step are combined: a task that stopped (eval.task_patience)
        has an empty row, and an empty row would pull MGDA's minimum-norm answer to no update at all."""
        if self.world.on:
            self._average_over_ranks()
        if not self.present:        # the heads-only warm-up: no shared gradient to combine
            return
        rows = sorted(self.present)
        whole = (self.jacobian @ self.jacobian.T).tolist()
        gramian = [[whole[i][j] for j in rows] for i in rows]
        if len(rows) not in self.weightings:
            self.weightings[len(rows)] = _weighting(self.mode, len(rows))
        weights = _host_weights(self.weightings[len(rows)], gramian)
        if self.world.on:       # rank 0's: PCGrad's random order would differ between the ranks' random states
            weights = from_rank_0(self.world, weights)
        full = [0.0] * len(self.tasks)      # an empty row weighs nothing (and is not copied out of the Jacobian)
        for row, weight in zip(rows, weights):
            full[row] = weight
        self._note(full, rows, gramian)
        combined = torch.tensor(full, dtype=self.jacobian.dtype).to(self.jacobian.device, non_blocking=True) \
            @ self.jacobian
        at = 0
        for q in self.shared:
            if q.requires_grad:     # a part only stopped tasks read is frozen: no gradient, so no decay either
                q.grad = combined[at:at + q.numel()].view(q.shape)
            at += q.numel()

    def _average_over_ranks(self) -> None:
        """The Jacobian and the heads' gradients summed over the ranks and divided by their number, in two
        all-reduces. Every rank ran the same tasks' backwards (a rank without rows in a batch a stand-in weighted
        0), so the rows present and the gradients that exist are the same on every rank."""
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
        dist.all_reduce(self.jacobian)
        self.jacobian.div_(self.world.size)
        grads = [q.grad for q in self.own if q.grad is not None]
        if grads:
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat)
            flat.div_(self.world.size)
            for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
                grad.copy_(reduced)

    def _note(self, weights: list[float], rows: list[int], gramian: list[list[float]]) -> None:
        """The weights and the mean cosine between the tasks' gradients, from host numbers (no device read); a
        task's mean weight counts the steps it trained in."""
        self.sums = [a + b for a, b in zip(self.sums, weights)]
        for row in rows:
            self.counts[row] += 1
        m = len(gramian)
        pairs = [gramian[i][j] / math.sqrt(gramian[i][i] * gramian[j][j])
                 for i in range(m) for j in range(i + 1, m) if gramian[i][i] > 0 and gramian[j][j] > 0]
        if pairs and all(math.isfinite(c) for c in pairs):
            self.cosines.append(sum(pairs) / len(pairs))

    def flush(self) -> tuple[dict[str, float] | None, float | None]:
        """The mean weights and cosine since the last flush (None before the first combined step)."""
        weights = {name: s / c for name, s, c in zip(self.tasks, self.sums, self.counts) if c} or None
        cosine = sum(self.cosines) / len(self.cosines) if self.cosines else None
        self.sums, self.counts, self.cosines = [0.0] * len(self.tasks), [0] * len(self.tasks), []
        return weights, cosine


def _host_weights(weighting: Any, gramian: list[list[float]]) -> list[float]:
    """The weighting's weights from the Gramian as host numbers: whatever the solver reads, it reads host memory.
    A non-finite Gramian gives the plain sum, so that the step guard sees the non-finite gradient and skips it."""
    if not all(math.isfinite(x) for row in gramian for x in row):
        return [1.0] * len(gramian)
    return weighting(torch.tensor(gramian, dtype=torch.float64)).tolist()
