"""Building everything a run trains: backbones, tokenised tasks, the model, optimiser, scheduler, stream."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import torch

from qarac_gui.core import paths
from qarac_gui.core.data.load import infer_labels, load_splits
from qarac_gui.core.data.tokenize import TaskData, tokenize
from qarac_gui.core.errors import RunStopped, UserError
from qarac_gui.core.events import Emit, Progress, RunStarted
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.model.adapters import apply_adapters
from qarac_gui.core.model.backbone import load_backbone, load_pretrained_lm
from qarac_gui.core.model.hub import DownloadCancelled
from qarac_gui.core.model.multitask import MultiTaskModel, apply_freezing, param_groups, pick_device
from qarac_gui.core.model.positions import check_max_lengths
from qarac_gui.core.project.config import Project
from qarac_gui.core.training.balancing import add_log_variances, balancing_groups, make_balancer
from qarac_gui.core.training.checkpoint import (
    TrainState,
    changed_rows,
    latest_checkpoint,
    load_checkpoint,
    rows_fingerprint,
    saved_rows,
)
from qarac_gui.core.training.compiling import compile_backbones
from qarac_gui.core.training.distributed import SINGLE, World, device_of, local_first, rank_seed, wrap
from qarac_gui.core.training.evaluation import default_monitor
from qarac_gui.core.training.forgetting import evaluation_view, freeze_keep_heads, keep_info, lm_head_notes
from qarac_gui.core.training.guard import scale_lr
from qarac_gui.core.training.loop import Trainee, autocast_factory
from qarac_gui.core.training.plan import group_factor, lr_curve, plan_run, task_probabilities
from qarac_gui.core.training.sampling import TaskStream, padding_report
from qarac_gui.core.training.task_stopping import check_task_patience


def seed_everything(seed: int) -> None:
    import numpy as np
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def started_event(trainee: Trainee, run_dir: Path, start_step: int, removed: dict[str, str],
                  lr_scale: float = 1.0, padding: dict[str, dict] | None = None) -> RunStarted:
    model = trainee.model
    tasks = {n: {"kind": d.task.head.kind, "train_rows": len(d.train),
                 "valid_rows": len(d.valid) if d.valid is not None else 0, "labels": d.labels,
                 "head_params": model.head_parameters(n)} | (padding or {}).get(n, {}) | keep_info(trainee, n)
             for n, d in trainee.tasks.items()}
    encoder_params = sum(p.numel() for p in model.backbones.parameters())
    trainable = sum(p.numel() for g in trainee.optimizer.param_groups for p in g["params"])
    curve = lr_curve(trainee.project, trainee.plan.total_steps, keep=(start_step,))
    if lr_scale != 1.0:     # a rolled-back run: the rest of the plan at the lower lr
        curve |= {k: [x * lr_scale if step > start_step else x for step, x in zip(curve["steps"], curve[k])]
                  for k in ("encoder", "heads")}
    return RunStarted(str(run_dir), trainee.plan.total_steps, start_step, tasks, curve, str(trainee.device),
                      trainee.precision, removed, encoder_params, trainable)


def row_lengths(ds) -> list:
    """Each tokenised input's token count per row (one array per input column), read from the Arrow lengths of
    the lists, without building the token ids as Python lists."""
    import numpy as np
    import pyarrow.compute as pc
    columns = [c for c in ds.column_names if c.endswith("input_ids")]
    if not columns or not len(ds):
        return [np.zeros(len(ds), dtype=np.int64)]
    table = ds.with_format("arrow")[:]
    return [pc.list_value_length(table.column(c)).to_numpy(zero_copy_only=False).astype(np.int64) for c in columns]


def _longest(inputs: list):
    import numpy as np
    return np.max(np.stack(inputs), axis=0)


def _check_stop(stop: threading.Event) -> None:
    if stop.is_set():
        raise RunStopped()


def prepare_tasks(project: Project, tokenizers: dict, emit: Emit, stop: threading.Event) -> dict[str, TaskData]:
    import datasets
    datasets.disable_progress_bars()
    cache = str(paths.cache_dir() / "datasets")
    out = {}
    for i, task in enumerate(project.tasks):
        _check_stop(stop)
        if task.data.hub or task.data.union:
            _fetch_hub_data(task, emit, stop)
        emit(Progress("data", f"Loading and tokenising {task.name}", i, len(project.tasks)))
        train, valid = load_splits(project, evaluation_view(task), cache)
        if task.keep and valid is None:     # never trained: every row it has is held out
            valid = train
        labels = infer_labels(task, train, valid)
        kind = kind_of(task.head)
        if kind.has_classes and len(labels) < 2:
            raise UserError(f"task {task.name}: found {len(labels)} label(s) ({', '.join(labels)}); a classifier "
                            "needs at least two; check the label column or list head.labels")
        tok = tokenizers[task.main_backbone]
        if kind.tokenizer_problem(task, tok):
            raise UserError(kind.tokenizer_problem(task, tok))
        # A kind over named inputs reads each column with its own backbone's tokenizer.
        reader = tokenizers if kind.takes_inputs else tok
        pad_ids = {prefix: tokenizers[b].pad_token_id or 0 for prefix, b in kind.prefixes(task).items() if b}
        out[task.name] = TaskData(task, labels, tokenize(task, reader, labels, train, "train"),
                                  tokenize(task, reader, labels, valid, "valid") if valid is not None else None,
                                  tok.pad_token_id or 0, tok.mask_token_id, len(tok), pad_ids)
    emit(Progress("data", "Data ready", len(project.tasks), len(project.tasks)))
    return out


def fetch_hub_data(project: Project, emit: Emit, stop: threading.Event) -> None:
    """Every Hub dataset of the project, downloaded into the shared cache with byte progress."""
    for task in project.tasks:
        if task.data.hub or task.data.union:
            _fetch_hub_data(task, emit, stop)


def download_reporter(repo_id: str, emit: Emit):
    """Progress events for a download, four a second at most."""
    from qarac_gui.core.model.hub import download_message, throttled
    return throttled(lambda p: emit(Progress("download", download_message(repo_id, p), p.done, p.total)), 0.25)


def _fetch_hub_data(task, emit: Emit, stop: threading.Event) -> None:
    """A task's Hub datasets' files (its own, or its union's), downloaded with byte progress (load_dataset would
    fetch them silently)."""
    from qarac_gui.core.project.config import DataConfig
    if task.data.union:
        for source in task.data.union:
            if source.hub:
                _fetch_one(task, DataConfig(hub=source.hub, hub_config=source.hub_config, train_split=source.split),
                           emit, stop)
    elif task.data.hub:
        _fetch_one(task, task.data, emit, stop)


def _fetch_one(task, d, emit: Emit, stop: threading.Event) -> None:
    from qarac_gui.core.data.hub import fetch_task_data
    from qarac_gui.core.model.hub import DownloadCancelled, HubDown, HubError
    try:
        got = fetch_task_data(d, progress=download_reporter(d.hub, emit), cancel=stop)
    except DownloadCancelled:
        raise RunStopped() from None
    except HubDown as e:        # datasets would be refused at once too, in its own words: say it in ours
        raise UserError(f"task {task.name}: {e}") from None
    except HubError as e:       # load_dataset tries itself next and reports what is wrong if it fails too
        emit(Progress("download", f"{d.hub}: could not fetch the files ahead ({e}); loading them directly"))
        return
    if got.total and not got.done:
        emit(Progress("download", f"{d.hub}: {got.total / 1e6:.1f} MB, already in the cache", got.total, got.total))


def make_optimizer(project: Project, model: MultiTaskModel, device: torch.device) -> torch.optim.Optimizer:
    o = project.optim
    groups = param_groups(project, model) + balancing_groups(project, model)
    kwargs = dict(lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    if o.optimizer == "nadam":
        # Decoupled, so weight_decay means what it means for AdamW. torch has no fused NAdam, so the guard skips a
        # non-finite step after one host sync instead of on the device. On CUDA, capturable keeps the step count
        # and the momentum product on the GPU, where load_state_dict puts the product on resume anyway: without it
        # a resumed run would read the product back from the GPU once per parameter per step.
        return torch.optim.NAdam(groups, decoupled_weight_decay=True, foreach=True,
                                 capturable=device.type == "cuda", **kwargs)
    if device.type in ("cuda", "cpu", "mps"):
        try:   # the fused kernel is the single biggest speed-up of the step (measured 30 -> 45 samples/s on CPU)
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(groups, foreach=True, **kwargs)


def make_scheduler(project: Project, optimizer: torch.optim.Optimizer, total_steps: int):
    lambdas = [group_factor(project.optim, total_steps, g["is_head"]) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def monitor_of(project: Project, tasks: dict[str, TaskData]) -> str:
    """The "task/metric" that picks the best step and drives early stopping; checked against what the task reports."""
    if not project.eval.metric:
        monitor = default_monitor(list(tasks.values()))
        if not monitor and project.eval.patience:
            raise UserError("eval.patience: early stopping needs validation data, and no task has any")
        return monitor
    name, _, metric = project.eval.metric.partition("/")
    kind = project.task(name).head.kind
    offered = ("loss",) + kind_of(project.task(name).head).reported(project.task(name).head)
    if metric not in offered:
        raise UserError(f"eval.metric: a {kind} task reports {', '.join(offered)}, not {metric!r}")
    if tasks[name].valid is None or not len(tasks[name].valid):
        raise UserError(f"eval.metric: task {name} has no validation data to measure {metric} on; give it "
                        "validation data or a validation_fraction above 0")
    return project.eval.metric

def _init_from(project: Project, model: MultiTaskModel, emit: Emit) -> None:
    """Start from an exported multi-task model: every backbone and head whose name matches is loaded."""
    from safetensors.torch import load_file
    folder = project.resolve(project.train.init_from)
    heads_file = folder / "heads.safetensors"
    if not heads_file.is_file():
        raise UserError(f"train.init_from: {folder} is not an exported multi-task model (no heads.safetensors)")
    loaded = []
    for name, encoder in model.backbones.items():
        weights = folder / "backbones" / name / "model.safetensors"
        if weights.is_file():
            _load_into(encoder, load_file(weights), f"backbone {name}")
            loaded.append(f"backbone {name}")
    saved = load_file(heads_file)
    for name, head in model.heads.items():
        own = {k.removeprefix(f"{name}."): v for k, v in saved.items() if k.startswith(f"{name}.")}
        if own:
            _load_into(head, own, f"task {name}")
            loaded.append(f"head {name}")
    poolers_file = folder / "poolers.safetensors"
    saved = load_file(poolers_file) if poolers_file.is_file() else {}
    for name, pooler in model.poolers.items():
        own = {k.removeprefix(f"{name}."): v for k, v in saved.items() if k.startswith(f"{name}.")}
        if own:
            _load_into(pooler, own, f"the pooler of backbone {name}")
            loaded.append(f"pooler {name}")
    emit(Progress("model", f"Initialised from {folder.name}: {', '.join(loaded) or 'nothing matched'}"))


def _load_into(module: torch.nn.Module, state: dict, what: str) -> None:
    current = module.state_dict()
    for key, value in state.items():
        if key in current and current[key].shape != value.shape:
            raise UserError(f"train.init_from: {what} does not fit ({key} has shape {tuple(value.shape)}, "
                            f"the project needs {tuple(current[key].shape)}); did its labels change?")
    module.load_state_dict(state, strict=False)


def _load(project: Project, emit: Emit, stop: threading.Event) -> tuple[dict, dict, dict[str, TaskData]]:
    """The backbones (downloaded if need be), their tokenizers, and the tokenised tasks."""
    loaded = {}
    for name, cfg in project.backbones.items():
        _check_stop(stop)
        emit(Progress("model", f"Loading {cfg.model}", 0, 1))
        try:
            loaded[name] = load_backbone(cfg, project.root, name=name, progress=download_reporter(cfg.model, emit),
                                         cancel=stop)
        except DownloadCancelled:
            raise RunStopped() from None
    tokenizers = {n: b.tokenizer for n, b in loaded.items()}
    # Longer rows than the position embeddings fail mid-forward, after all the tokenising: refuse them first.
    check_max_lengths(project, {n: b.model.config for n, b in loaded.items()}, tokenizers)
    return loaded, tokenizers, prepare_tasks(project, tokenizers, emit, stop)


def build_run(project: Project, run_dir: Path, emit: Emit, stop: threading.Event,
              resume: bool, lr_scale: float = 1.0, world: World = SINGLE) -> tuple[Trainee, TrainState, RunStarted]:
    """Everything fit() needs; under several processes (`world`) each process builds the same, on its own device,
    the first process of each machine downloading and tokenising before the others read the caches."""
    if project.train.num_threads:
        torch.set_num_threads(project.train.num_threads)
    seed_everything(project.train.seed)
    device = device_of(world, pick_device(project.train.device))
    with local_first(world):
        loaded, tokenizers, tasks = _load(project, emit, stop)
    _check_stop(stop)
    check_task_patience(project, tasks)
    emit(Progress("model", "Building the model and its heads"))
    wants_lm = {t.main_backbone for t in project.tasks if kind_of(t.head).uses_lm_head}
    pretrained_lms = {n: load_pretrained_lm(project.backbones[n], b, name=n) for n, b in loaded.items()
                      if n in wants_lm and b.architecture.endswith("ForMaskedLM")}
    for note in lm_head_notes(project, pretrained_lms, loaded):
        emit(Progress("model", note))
    # Seed again so head initialisation does not depend on how much randomness loading used.
    seed_everything(project.train.seed)
    model = MultiTaskModel(project, {n: b.model for n, b in loaded.items()},
                           {n: len(d.labels) for n, d in tasks.items()}, pretrained_lms)
    if project.train.init_from:
        _init_from(project, model, emit)
    apply_freezing(project, model)
    apply_adapters(project, model)          # LoRA: the base weights frozen, the adapters (and heads) train
    freeze_keep_heads(project, model)
    add_log_variances(project, model)
    _check_stop(stop)
    emit(Progress("model", f"Moving the model to {device}"))
    model.to(device)
    if project.train.compile:
        emit(Progress("model", "Compiling the backbones with torch.compile: the first steps take longer"))
        compile_backbones(model, tasks, device)
    if world.on:
        emit(Progress("model", f"{world.size} processes train this model, each on its share of every batch"))
    sizes = {n: len(d.train) for n, d in tasks.items() if not d.task.keep}     # keep tasks are never drawn
    plan = plan_run(project, sizes)
    inputs = {n: row_lengths(tasks[n].train) for n in sizes}
    # A row of several inputs (sentence pairs) is as long as its longest: on the demo's pairs that leaves 15 %
    # padding, the sum of both 21 %, random batches 29 %.
    lengths = {n: _longest(v) for n, v in inputs.items()}
    stream = TaskStream(sizes, {t.name: t.batch_size for t in project.tasks}, project.train.mixing,
                        task_probabilities(project, sizes), project.train.seed, lengths,
                        grouped=project.train.group_by_length)
    emit(Progress("model", "Building the optimiser"))
    optimizer = make_optimizer(project, model, device)
    scheduler = make_scheduler(project, optimizer, plan.total_steps)
    autocast, precision = autocast_factory(device, project.train.precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    trainee = Trainee(project, model, tasks, stream, optimizer, scheduler, scaler, device, autocast, plan,
                      monitor_of(project, tasks), run_dir / "checkpoints", tokenizers,
                      {n: b.source for n, b in loaded.items()}, precision)
    trainee.balancer = make_balancer(project, model, device, world)
    fingerprints = {n: rows_fingerprint(d.train) for n, d in tasks.items()}
    state = TrainState(data=fingerprints)
    if resume:
        path, notes = latest_checkpoint(run_dir / "checkpoints")
        for note in notes:
            emit(Progress("resume", note))
        if path is None:
            raise UserError(f"{run_dir} has no complete checkpoint to resume from")
        emit(Progress("resume", f"Resuming from {path.name}"))
        changed = changed_rows(saved_rows(path), fingerprints)    # before the stream reads positions in them
        if changed:
            raise UserError("; ".join(changed) + ". A run continues only on the rows it started with: put the "
                            "data back as it was, or start a new run with the new data")
        state = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                stream=stream, device=device)
        state.data = fingerprints
        if stream.grouped != project.train.group_by_length:
            how = "grouped by length" if stream.grouped else "random (not grouped by length)"
            emit(Progress("resume", f"The run continues with {how} batches, as it began; train.group_by_length "
                                    "applies to new runs"))
        if state.micro_split > 1 and not world.on:
            emit(Progress("memory", f"Continuing with each batch cut into {state.micro_split} micro-batches, as "
                                    "before (it ran out of memory with whole ones)"))
        if lr_scale != 1.0:
            scale_lr(scheduler, optimizer, lr_scale)
            state.lr_scale *= lr_scale
            state.skipped_in_a_row = 0
            emit(Progress("resume", f"Rolled back to step {state.step}; the learning rate from here on is "
                                    f"{state.lr_scale:g} times the planned one"))
    if world.on:
        # Built now, while the encoder still trains: DDP reduces only what required gradients when it was built
        balance = trainee.balancer.loss if trainee.balancer is not None else None     # uncertainty
        trainee.world, trainee.ddp = world, wrap(model, device, balance)
        # Each rank's own dropout draws (after the checkpoint's RNG state, which is rank 0's)
        torch.manual_seed(rank_seed(project.train.seed, world, state.step))
    removed = {n: b.removed for n, b in loaded.items() if b.removed}
    # After the checkpoint, whose stream says whether the run groups by length (the project may say otherwise).
    padding = padding_report(stream, inputs)
    return trainee, state, started_event(trainee, run_dir, state.step, removed, state.lr_scale, padding)
