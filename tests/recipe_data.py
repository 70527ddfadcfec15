"""Small local stand-ins of the recipe's three datasets, with the column names they have on the Hub:
microsoft/wiki_qa (question, answer, label 1 for a correct answer), stanfordnlp/snli (premise, hypothesis, label
0 entailment, 1 neutral, 2 contradiction, -1 no gold label) and a syllogism set (premise1, premise2, conclusion);
the reconstruction text is the union of their sentences (data.union)."""

from __future__ import annotations

import json
import random
from pathlib import Path

PLACES = ["paris", "london", "berlin", "rome"]
THINGS = ["museum", "tower", "river", "city"]
ANIMALS = ["cat", "dog"]
NAMES = ["alice", "bob", "carol", "dave"]
HABITS = ["sleeps", "runs"]


def wiki_qa(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        thing, place = rng.choice(THINGS), rng.choice(PLACES)
        right = i % 3 != 2
        answer = f"the {thing} is in {place}" if right else f"the {rng.choice(ANIMALS)} {rng.choice(HABITS)}"
        rows.append({"question_id": f"Q{i}", "question": f"where is the {thing} of {place}",
                     "document_title": thing, "answer": answer, "label": int(right)})
    return rows


def snli(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        name, habit = rng.choice(NAMES), rng.choice(HABITS)
        other = HABITS[1 - HABITS.index(habit)]
        label = [0, 1, 2, -1][i % 4]
        hypothesis = {0: f"{name} {habit}", 1: f"{name} {habit} in {rng.choice(PLACES)}",
                      2: f"{name} {other}", -1: f"{name} is quiet"}[label]
        rows.append({"premise": f"{name} {habit} very fast", "hypothesis": hypothesis, "label": label})
    return rows


def syllogisms(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        name, animal, habit = rng.choice(NAMES), rng.choice(ANIMALS), rng.choice(HABITS)
        rows.append({"premise1": f"a {animal} {habit}", "premise2": f"{name} is a {animal}",
                     "conclusion": f"{name} {habit}"})
    return rows


def write_recipe_data(folder: Path, n: int = 40, seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"wiki_qa": wiki_qa(rng, n), "snli": snli(rng, n), "syllogisms": syllogisms(rng, n)}
    paths = {}
    for name, rows in tables.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


def recipe_project(model: Path, data: dict[str, Path], steps: int = 40) -> dict:
    """The four objectives over three backbones of one base, as a raw project."""
    backbones = {"question_encoder": {"model": str(model), "pooling": "attention"},
                 "answer_encoder": {"model": str(model), "pooling": "attention"},
                 "decoder": {"model": str(model), "role": "decoder"}}
    common = {"batch_size": 8, "max_length": 24}
    tasks = [
        {"name": "encode_decode", **common,
         "inputs": {"s": "answer_encoder:sentence"},
         "head": {"kind": "decode", "decoder": "decoder", "condition": "s"},
         "data": {"union": [
             {"train": str(data["wiki_qa"]), "columns": ["question", "answer"], "filter": "label == 1"},
             {"train": str(data["snli"]), "columns": ["premise", "hypothesis"]},
             {"train": str(data["syllogisms"]), "columns": ["premise1", "premise2", "conclusion"]}],
             "text": "sentence", "label": "sentence", "validation_fraction": 0.2}},
        {"name": "question_answering", **common,
         "inputs": {"q": "question_encoder:question", "a": "answer_encoder:answer"},
         "head": {"kind": "vector", "left": "q", "right": "a", "compare": "distance"},
         "data": {"train": str(data["wiki_qa"]), "filter": "label == 1", "validation_fraction": 0.2}},
        {"name": "reasoning", **common,
         "inputs": {"p1": "answer_encoder:premise1", "p2": "answer_encoder:premise2"},
         "head": {"kind": "decode", "decoder": "decoder", "condition": "p1 + p2"},
         "data": {"train": str(data["syllogisms"]), "label": "conclusion", "validation_fraction": 0.2}},
        {"name": "consistency", **common,
         "inputs": {"s1": "answer_encoder:premise", "s2": "answer_encoder:hypothesis"},
         "head": {"kind": "vector", "left": "s1", "right": "s2", "compare": "cosine"},
         "data": {"train": str(data["snli"]), "filter": "label != -1", "label_map": {"0": 1, "1": 0, "2": -1},
                  "validation_fraction": 0.2}},
    ]
    return {"version": 2, "name": "recipe", "backbones": backbones, "tasks": tasks,
            "optim": {"lr": 1e-3, "warmup_steps": 0, "scheduler": "constant"},
            "train": {"max_steps": steps, "log_every": 1, "seed": 3, "mixing": "all_tasks"},
            "eval": {"batch_size": 16}}
