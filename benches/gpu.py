"""How close does the engine come to the GPU's peak when it trains a roberta-base-sized encoder on two tasks?

    python benches/gpu.py                         # on a CUDA machine: 8 settings, median of 3 runs each
    python benches/gpu.py --rounds 5 --steps 60
    python benches/gpu.py --peak-tflops 400       # a GPU missing from the table below (dense bf16 TFLOPS)
    python benches/gpu.py --smoke                 # a tiny random encoder on CPU in seconds (the default without CUDA)

A random roberta-base (RobertaConfig's defaults: 12 layers, hidden 768, 12 heads, vocabulary 50,265) is saved into
a temporary model folder with a word-level tokenizer of the same vocabulary, then trained by `run()` on two tasks
(classification and pair similarity, all_tasks mixing: both every step) read from files. Every setting is a
process of its own, and the settings take turns round by round so that they share the machine's drift:

- batch 64 and 128 rows per task, max_length 128;
- fixed lengths (every text fills its 128 tokens) or variable ones (lognormal word counts, median 40: realistic
  sentences), both with train.group_by_length so that a batch holds rows of similar length;
- eager, or compiled (train.compile = true, where this version of the engine has the key).

Figures are steady state: the first `--warmup` steps are left out. A sample is a row (a text, or a text pair);
tokens are non-pad tokens of every text the encoder read. Useful FLOPs count each text at its own length:
l * (6N + 12 L d l), which for fixed lengths is the familiar 6N + 12 L d s per token (s = 128).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED, MAX_LENGTH, ROWS, LOG_EVERY = 42, 128, 2048, 10
BATCHES, SMOKE_BATCHES = (64, 128), (4, 8)
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
SMOKE_CONFIG = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=256, max_position_embeddings=MAX_LENGTH + 2)
# Dense bf16 tensor-core TFLOPS (no sparsity), from the vendors' data sheets; the first pattern found in the
# device's name wins, so the more specific ones come first.
PEAK_TFLOPS = (("GH200", 989.0), ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0),
               ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
               ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0))
HOPPER_CLASS = 900.0            # the targets are for a GPU of an H100's peak or more
TARGET_MFU = {"eager": 0.30, "compiled": 0.45}
TARGET_VARIABLE = 0.85          # variable lengths' non-pad FLOPs/s within 15 % of the fixed-length figure
NOT_AVAILABLE = "compiled: not available in this engine"
RESULT = "RESULT "
FORMULA = ("FLOPs per token = 6N + 12 L d s (N = non-embedding parameters, L layers, d hidden, s sequence length; "
           "each text counted at its own non-pad length); MFU = achieved FLOPs/s / the GPU's dense bf16 peak")


# ---------------------------------------------------------------------------------------------------- FLOPs

def non_embedding_params(layers: int, hidden: int, intermediate: int) -> int:
    """Weights and biases of a BERT-style encoder's layers: attention (Q, K, V, output), the feed-forward pair and
    two layer norms each; the embeddings and the pooler are left out."""
    attention = 4 * (hidden * hidden + hidden)
    feed_forward = hidden * intermediate + intermediate + intermediate * hidden + hidden
    return layers * (attention + feed_forward + 2 * 2 * hidden)


def flops_per_token(n: int, layers: int, hidden: int, seq: int) -> int:
    """Training FLOPs (forward and backward) per token of a sequence of `seq` tokens: 6N + 12 L d s."""
    return 6 * n + 12 * layers * hidden * seq


def sequence_flops(lengths: list[int], n: int, layers: int, hidden: int) -> int:
    return sum(length * flops_per_token(n, layers, hidden, length) for length in lengths)


def mfu(flops_per_s: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOPs/s over the peak; None without a peak."""
    return flops_per_s / (peak_tflops * 1e12) if peak_tflops else None


def peak_for(device_name: str) -> float | None:
    for pattern, tflops in PEAK_TFLOPS:
        if re.search(rf"\b{re.escape(pattern)}\b", device_name):
            return tflops
    return None


# ---------------------------------------------------------------------------------------------------- inputs

def make_model_folder(folder: Path, smoke: bool) -> dict:
    """A random roberta-base (or the tiny smoke encoder) and a word-level tokenizer of its vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import AutoModel, PreTrainedTokenizerFast, RobertaConfig
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    config = RobertaConfig(**SMOKE_CONFIG) if smoke else RobertaConfig()
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), config.vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    assert len(tokenizer) == config.vocab_size and tokenizer.pad_token_id == config.pad_token_id
    torch.manual_seed(SEED)
    model = AutoModel.from_config(config)
    counted = sum(p.numel() for p in model.encoder.parameters())
    n = non_embedding_params(config.num_hidden_layers, config.hidden_size, config.intermediate_size)
    if counted != n:
        raise SystemExit(f"the encoder has {counted} non-embedding parameters, the formula says {n}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"folder": str(folder), "n": n, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "vocab": config.vocab_size, "total_params": sum(p.numel() for p in model.parameters())}


def word_counts(variable: bool, rows: int, rng: random.Random) -> list[int]:
    if not variable:
        return [MAX_LENGTH + 8] * rows        # longer than max_length: every text is cut at 128 tokens
    return [min(MAX_LENGTH + 8, max(4, round(rng.lognormvariate(math.log(40), 0.6)))) for _ in range(rows)]


def write_data(folder: Path, vocab: int, rows: int, variable: bool) -> dict[str, Path]:
    import csv
    rng = random.Random(f"{SEED}/{variable}")

    def text(words: int) -> str:
        return " ".join(f"w{rng.randrange(len(SPECIALS), vocab)}" for _ in range(words))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"classify": folder / "classify.csv", "similar": folder / "similar.csv"}
    with open(paths["classify"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([text(n), rng.choice(["neg", "pos"])] for n in word_counts(variable, rows, rng))
    with open(paths["similar"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence1", "sentence2", "score"])
        pairs = zip(word_counts(variable, rows, rng), word_counts(variable, rows, rng))
        writer.writerows([text(a), text(b), f"{rng.uniform(-1, 1):.3f}"] for a, b in pairs)
    return paths


def project_dict(cfg: dict, compiled: bool) -> dict:
    from qarac_gui.core.project.config import CURRENT_VERSION
    data = cfg["data"]
    tasks = [{"name": "classify", "batch_size": cfg["batch"], "max_length": MAX_LENGTH,
              "head": {"kind": "classification", "labels": ["neg", "pos"]},
              "data": {"train": data["classify"], "text": "text", "label": "label", "validation_fraction": 0.0}},
             {"name": "similar", "batch_size": cfg["batch"], "max_length": MAX_LENGTH,
              "head": {"kind": "similarity"},
              "data": {"train": data["similar"], "text": "sentence1", "text_pair": "sentence2", "label": "score",
                       "validation_fraction": 0.0}}]
    train = {"mixing": "all_tasks", "max_steps": cfg["steps"], "seed": SEED, "log_every": LOG_EVERY,
             "device": cfg["device"], "precision": "bf16" if cfg["device"] == "cuda" else "fp32",
             "group_by_length": True}
    if cfg["device"] == "cpu":
        # One thread: a smoke on a shared machine stalls far less than with threads waiting on a busy core.
        train["num_threads"] = 1
    if compiled:
        train["compile"] = True
    return {"version": CURRENT_VERSION, "name": "gpu-bench", "backbones": {"encoder": {"model": cfg["model"]}},
            "tasks": tasks, "optim": {"lr": 5e-5, "warmup_ratio": 0.1}, "train": train,
            "eval": {"every": 0}, "checkpoint": {"every": 0, "minutes": 0}, "export": {"full_model": False}}


def compile_supported() -> bool:
    """Whether this engine's project files accept train.compile (an unknown key is refused naming it)."""
    from qarac_gui.core.errors import UserError
    from qarac_gui.core.project.config import parse_project
    raw = project_dict({"data": {"classify": "a.csv", "similar": "b.csv"}, "batch": 8, "steps": 2,
                        "device": "cpu", "model": "m"}, compiled=True)
    try:
        parse_project(copy.deepcopy(raw), check=False)
    except UserError as e:
        if "compile" in str(e) and "unknown key" in str(e):
            return False
        raise
    return True


# ---------------------------------------------------------------------------------------------------- worker

def run_setting(cfg: dict) -> dict:
    """One engine run; the tokens of each step come from the batches the engine collated, in order per task
    (all_tasks mixing collates one batch of every task per step, ahead of the step or not)."""
    import threading

    import torch

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.events import RunStarted, StepDone
    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    cuda = cfg["device"] == "cuda"
    collated: dict[str, list[tuple[int, list[int], int]]] = {}     # task -> (rows, lengths, padded width) in order
    stamps, seen = {}, {"peak_mem_mb": 0.0}
    collate = TaskData.collate

    def recording_collate(self, rows, seed=0):
        batch = collate(self, rows, seed)
        lengths = [len(x) for key, ids in rows.items() if key.endswith("input_ids") for x in ids]
        widths = sum(v.shape[0] * v.shape[1] for k, v in batch.items() if k.endswith("input_ids"))
        collated.setdefault(self.name, []).append((len(rows["input_ids"]), lengths, widths))
        return batch

    def emit(event) -> None:
        if isinstance(event, RunStarted):
            seen["precision"], seen["device_used"] = event.precision, event.device
        elif isinstance(event, StepDone) and event.step in (cfg["warmup"], cfg["steps"]):
            if cuda:
                torch.cuda.synchronize()        # the host runs ahead of the GPU: time the window's ends on the device
            stamps[event.step] = time.perf_counter()
            if cuda and event.step == cfg["warmup"]:
                torch.cuda.reset_peak_memory_stats()     # steady state: compilation and warm-up left out
            if event.step == cfg["steps"]:
                seen["peak_mem_mb"] = (torch.cuda.max_memory_allocated() / 2**20 if cuda
                                       else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    project = parse_project(project_dict(cfg, cfg["compiled"]), Path(cfg["root"]))
    TaskData.collate = recording_collate
    try:
        with tempfile.TemporaryDirectory(prefix="qarac-gpu-bench-run-") as tmp:
            ended = run(project, emit, threading.Event(), run_dir=Path(tmp) / "run")
    finally:
        TaskData.collate = collate      # the next setting in this process records into its own lists only
    if ended.reason != "completed":
        raise RuntimeError(f"the engine's run ended {ended.reason}: {ended.message}")
    counts = {name: len(batches) for name, batches in collated.items()}
    if any(n != cfg["steps"] for n in counts.values()):
        raise RuntimeError(f"expected one batch of each task per step ({cfg['steps']}), the engine collated {counts}"
                           " (an out-of-memory split, or another mixing): the token counts would be wrong")
    timed = [b for batches in collated.values() for b in batches[cfg["warmup"]:]]
    lengths = [length for _, ls, _ in timed for length in ls]
    m = cfg["shape"]
    return {"seconds": stamps[cfg["steps"]] - stamps[cfg["warmup"]], "samples": sum(r for r, _, _ in timed),
            "tokens": sum(lengths), "padded": sum(w for _, _, w in timed),
            "flops": sequence_flops(lengths, m["n"], m["layers"], m["hidden"]),
            "device_name": torch.cuda.get_device_name() if cuda else "CPU", **seen}


# ---------------------------------------------------------------------------------------------------- driver

def run_worker(cfgs: list[dict], env: dict) -> list[dict | str]:
    """Each setting's figures, or why it failed: what it said, or the tail of what the process printed."""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfgs)], capture_output=True, text=True,
                          env=env)
    got = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or len(got) != len(cfgs):
        tail = " / ".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        got += [{"failed": f"failed (exit {proc.returncode}): {tail}"}] * (len(cfgs) - len(got))
    return [r["failed"] if "failed" in r else r for r in got]


def worker(cfgs: list[dict]) -> None:
    for cfg in cfgs:
        try:
            result = run_setting(cfg)
        except Exception as e:          # one failed setting is a row that says why; the others still run
            result = {"failed": f"failed: {type(e).__name__}: {e}".replace("\n", " ")[:300]}
        print(RESULT + json.dumps(result), flush=True)


def figures(runs: list[dict]) -> dict:
    def med(f) -> float:
        return statistics.median(f(r) for r in runs)
    return {"samples_per_s": med(lambda r: r["samples"] / r["seconds"]),
            "tokens_per_s": med(lambda r: r["tokens"] / r["seconds"]),
            "flops_per_s": med(lambda r: r["flops"] / r["seconds"]),
            "padding": med(lambda r: 1 - r["tokens"] / r["padded"]), "peak_mem_mb": med(lambda r: r["peak_mem_mb"])}


def table(settings: list[tuple], results: dict, peak: float | None, cuda: bool, mem_name: str) -> str:
    lines = [f"| batch | lengths | mode | samples/s | non-pad tokens/s | padding | {mem_name} | TFLOPS (non-pad) | "
             "MFU | target | vs fixed (target >= 0.85) | note |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for key in settings:
        batch, lengths, mode = key
        got = results[key]
        if isinstance(got, str):
            lines.append(f"| {batch} | {lengths} | {mode} |  |  |  |  |  |  |  |  | {got} |")
            continue
        f = figures(got)
        share = mfu(f["flops_per_s"], peak)
        target = ""
        if cuda and share is not None:
            verdict = ("met" if share >= TARGET_MFU[mode] else "missed") if peak >= HOPPER_CLASS else "H100-class only"
            target = f">= {TARGET_MFU[mode]:.0%} ({verdict})"
        elif not cuda:
            target = "none on CPU"
        versus = ""
        fixed = results.get((batch, "fixed", mode))
        if lengths == "variable" and isinstance(fixed, list):
            ratio = f["flops_per_s"] / figures(fixed)["flops_per_s"]
            verdict = ("met" if ratio >= TARGET_VARIABLE else "missed") if cuda else "no target on CPU"
            versus = f"**{ratio:.2f}** ({verdict})"
        lines.append(f"| {batch} | {lengths} | {mode} | {f['samples_per_s']:.1f} | {f['tokens_per_s']:.0f} "
                     f"| {f['padding']:.1%} | {f['peak_mem_mb']:.0f} | {f['flops_per_s'] / 1e12:.4g} "
                     f"| {'peak unknown' if share is None else f'{share:.1%}'} | {target} | {versus} |  |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="optimiser steps per run, warm-up included (default 40)")
    parser.add_argument("--warmup", type=int, help="first steps left out of the figures (default 15)")
    parser.add_argument("--rounds", type=int, help="runs of each setting, the median shown (default 3)")
    parser.add_argument("--smoke", action="store_true", help="a tiny random encoder on CPU, batches 4 and 8, one "
                        "round of 10 steps in one process; the default without CUDA")
    parser.add_argument("--modes", default="", help="eager,compiled (default: both; eager alone with --smoke, "
                        "where compiling would take longer than the whole smoke)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, instead of the table's")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    import torch
    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("no CUDA device: running the CPU smoke (--smoke) instead", file=sys.stderr)
    smoke = not cuda
    for name, default in zip(("steps", "warmup", "rounds"), (10, 3, 1) if smoke else (40, 15, 3)):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if not 1 <= args.warmup < args.steps:
        parser.error(f"--warmup must be at least 1 and below --steps ({args.steps}), not {args.warmup}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.peak_tflops is not None and not (math.isfinite(args.peak_tflops) and args.peak_tflops > 0):
        parser.error(f"--peak-tflops must be a number above 0, not {args.peak_tflops}")
    modes = [m.strip() for m in (args.modes or ("eager" if smoke else "eager,compiled")).split(",") if m.strip()]
    if not modes or set(modes) - {"eager", "compiled"}:
        parser.error(f"--modes takes eager, compiled or both (comma-separated), not {args.modes!r}")
    device_name = torch.cuda.get_device_name() if cuda else "CPU"
    peak = args.peak_tflops or (peak_for(device_name) if cuda else None)
    has_compile = compile_supported()
    settings = [(b, lengths, mode) for b in (SMOKE_BATCHES if smoke else BATCHES) for lengths in ("fixed", "variable")
                for mode in ("eager", "compiled")]
    results: dict[tuple, list | str] = {}
    for key in settings:
        if key[2] == "compiled" and not has_compile:
            results[key] = NOT_AVAILABLE
        elif key[2] not in modes:
            results[key] = f"{key[2]}: not run (not in --modes)"
        else:
            results[key] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qarac-gpu-bench-") as tmp:
        # The app's data and cache folders for these runs only: the tokenised rows are cached across the runs,
        # and the user's run history is left alone.
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "QARAC_GUI_DATA": str(Path(tmp) / "data"), "QARAC_GUI_CACHE": str(Path(tmp) / "cache")}
        shape = make_model_folder(Path(tmp) / "model", smoke)
        rows = 64 if smoke else ROWS
        data = {lengths: {k: str(p) for k, p in write_data(Path(tmp) / lengths, shape["vocab"], rows,
                                                            lengths == "variable").items()}
                for lengths in ("fixed", "variable")}
        for r in range(args.rounds):
            todo = [key for key in settings if isinstance(results[key], list)]
            cfgs = [{"batch": batch, "steps": args.steps, "warmup": args.warmup, "compiled": mode == "compiled",
                     "device": "cuda" if cuda else "cpu", "model": shape["folder"], "data": data[lengths],
                     "root": tmp, "shape": shape} for batch, lengths, mode in todo]
            # A process per setting, so that its peak memory and compiled code are its own; the smoke shares one
            # process between its settings, since starting one costs more than the smoke's training.
            got = run_worker(cfgs, env) if smoke else [g for cfg in cfgs for g in run_worker([cfg], env)]
            for key, one in zip(todo, got):
                if isinstance(one, str):
                    results[key] = one
                else:
                    results[key].append(one)
                print(f"round {r + 1}/{args.rounds}: batch {key[0]}, {key[1]}, {key[2]}: "
                      f"{one if isinstance(one, str) else round(one['tokens'] / one['seconds'])} tokens/s",
                      file=sys.stderr, flush=True)
    first = next((v[0] for v in results.values() if isinstance(v, list) and v), {})
    model = ("tiny random RoBERTa (--smoke: " + ", ".join(f"{k} {v}" for k, v in SMOKE_CONFIG.items()) + ")"
             if smoke else "random roberta-base")
    where = device_name if cuda else "CPU, one torch thread"
    print(f"\n{model}, N = {shape['n']:,} non-embedding parameters ({shape['total_params']:,} in all), "
          f"L = {shape['layers']}, d = {shape['hidden']}, max_length {MAX_LENGTH}; two tasks (classification, pair "
          f"similarity) every step; on {where} ({first.get('precision', '?')}); peak "
          f"{f'{peak:g} TFLOPS' if peak else 'unknown (give --peak-tflops)'}"
          f"{' (--peak-tflops)' if args.peak_tflops else ''}; {args.steps - args.warmup} steps timed after "
          f"{args.warmup} of warm-up; median of {args.rounds} run(s); torch {torch.__version__}; "
          f"{time.monotonic() - began:.0f} s in all\n")
    mem_name = "peak memory allocated (MB)" if cuda else "peak RSS (MB)"
    if smoke:
        print("(--smoke: the settings share one process, so each peak RSS is the largest up to that setting)\n")
    print(table(settings, results, peak, cuda, mem_name))
    print(f"\n{FORMULA}. Targets (an H100/H200-class GPU): MFU >= 45 % compiled, >= 30 % eager; variable lengths' "
          "non-pad FLOPs/s within 15 % of fixed lengths' (vs fixed >= 0.85).")
    failed = [v for v in results.values() if isinstance(v, str) and v.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
