"""Kinds over named inputs: each input is a column read by one backbone into one sentence vector (pooled by that
backbone's own pooler), and the head combines the vectors with + and -. `vector` compares two combinations;
`decode` conditions a decoder backbone on one and trains it to write a target column."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import cells
from qarac_gui.core.kinds.base import HeadKind, Prediction, TypedInput

if TYPE_CHECKING:
    from torch import nn

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.project.config import HeadConfig, Project, TaskConfig

SEPARATOR = "__"           # input name + SEPARATOR + input_ids / attention_mask / token_type_ids
COMPARISONS = ("cosine", "distance")


EXPRESSION = re.compile(r"\s*([+-]?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*")


def task_inputs(task: TaskConfig) -> dict[str, tuple[str, str]]:
    """name -> (backbone, column) of a task's named inputs; ValueError naming what is wrong."""
    out = {}
    for name, spec in task.inputs.items():
        backbone, sep, column = spec.partition(":")
        if not sep or not backbone.strip() or not column.strip():
            raise ValueError(f"inputs.{name}: {spec!r} must be \"backbone:column\", e.g. \"encoder:question\"")
        out[name] = (backbone.strip(), column.strip())
    return out


def parse_expression(text: str) -> list[tuple[int, str]]:
    """[(+1 or -1, input name)] of an expression like "p1 + p2" or "q - a"; ValueError naming what is wrong."""
    terms, at = [], 0
    while at < len(text):
        m = EXPRESSION.match(text, at)
        if m is None or m.end() == at or (terms and not m.group(1)):
            raise ValueError(f"{text!r}: expected input names joined by + or -, e.g. \"p1 + p2\"")
        terms.append((-1 if m.group(1) == "-" else 1, m.group(2)))
        at = m.end()
    if not terms:
        raise ValueError("empty: name one input at least")
    return terms


_inputs, _terms = task_inputs, parse_expression


class _OverInputs(HeadKind):
    takes_inputs = True
    export_as = "backbones"         # no head of its own to write: the backbones (and their poolers) are the model
    expressions: tuple[str, ...] = ()   # head options holding expressions of input names

    def problems(self, where: str, task: TaskConfig, project: Project) -> list[str]:
        if not task.inputs:
            return [f"{where}.inputs: a {self.name} head reads named inputs, e.g. inputs = {{ q = "
                    "\"encoder:question\" }"]
        try:
            names = set(_inputs(task))
        except ValueError:
            return []               # named by the inputs' own check
        out = []
        for key in self.expressions:
            text = getattr(task.head, key)
            try:
                unknown = sorted({name for _, name in _terms(text)} - names)
            except ValueError as e:
                out.append(f"{where}.head.{key}: {e}")
                continue
            if unknown:
                out.append(f"{where}.head.{key}: no input named {', '.join(map(repr, unknown))} (inputs: "
                           f"{', '.join(sorted(names))})")
        return out

    def text_columns(self, task: TaskConfig) -> list[str]:
        return list(dict.fromkeys(column for _, column in _inputs(task).values()))

    def columns(self, task: TaskConfig) -> list[str]:
        label = [task.data.label] if self.label_role_for(task.head) else []
        return list(dict.fromkeys(self.text_columns(task) + label))

    def bad_cells(self, task: TaskConfig, columns: dict[str, list]) -> list[tuple[int, str] | None]:
        return [cells.first_where(columns[c], lambda v, c=c: cells.text_problem(v, c)) for c in self.text_columns(task)]

    def prefixes(self, task: TaskConfig) -> dict[str, str]:
        return {name + SEPARATOR: backbone for name, (backbone, _) in _inputs(task).items()}

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        out = {}
        for name, (backbone, column) in _inputs(task).items():
            enc = tokenizer[backbone](batch[column], truncation=True, max_length=task.max_length)
            out.update({name + SEPARATOR + k: v for k, v in enc.items()})
        return out

    def outputs(self, num_labels: int) -> int:
        return 0

    def export_problem(self, spec: HeadConfig, model_type: str, hidden_size: int) -> str:
        return (f"a {self.name} head has no weights of its own: its backbones, with their poolers, are exported "
                "in export/backbones and export/full")

    def backbones(self, task: TaskConfig) -> list[str]:
        return list(dict.fromkeys(backbone for backbone, _ in _inputs(task).values()))

    def used_inputs(self, task: TaskConfig) -> list[str]:
        """The inputs the head's expressions name, in the order of the task's inputs."""
        named = {name for key in self.expressions for _, name in _terms(getattr(task.head, key))}
        return [name for name in task.inputs if name in named]

    def typed_inputs(self, task: TaskConfig) -> list[TypedInput]:
        inputs = _inputs(task)
        return [TypedInput(name, f"{name}: {inputs[name][1]} (read by {inputs[name][0]})", lines=True)
                for name in self.used_inputs(task)]

    def typed_hint(self, task: TaskConfig) -> str:
        return "One text per line gives a row each; an input with a single line serves every row."

    def typed_rows(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any],
                   inputs: dict[str, str]) -> tuple[dict, list[dict[str, str]]]:
        """The typed texts as a batch of rows (one line each; a single line serves every row), and the rows."""
        from qarac_gui.core.kinds.layers import on_device_of
        names, lines = self.used_inputs(task), {}
        for name in names:
            lines[name] = [line.strip() for line in (inputs.get(name) or "").splitlines() if line.strip()]
            if not lines[name]:
                raise UserError(f"type something into {name!r} first")
        count = max(len(v) for v in lines.values())
        uneven = {name: len(v) for name, v in lines.items() if len(v) not in (1, count)}
        if uneven:
            raise UserError(f"give each input one line (used for every row) or {count} lines, one per row; "
                            + ", ".join(f"{name!r} has {n}" for name, n in uneven.items()))
        rows = [{name: v[i] if len(v) > 1 else v[0] for name, v in lines.items()} for i in range(count)]
        batch = {}
        for name in names:
            backbone = _inputs(task)[name][0]
            enc = tokenizers[backbone]([row[name] for row in rows], padding=True, truncation=True,
                                       max_length=task.max_length, return_tensors="pt")
            batch.update({name + SEPARATOR + k: v for k, v in enc.items()})
        return on_device_of(model, batch), rows


class Vector(_OverInputs):
    name, title = "vector", "Vector comparison"
    help = ("Compare two sums of sentence vectors: by cosine against a score in [-1, 1], or by distance to zero "
            "(the pairs in a row should embed alike).")
    label_role = "score"
    score_range = (-1.0, 1.0)
    options = ("left", "right", "compare")
    expressions = ("left", "right")
    metrics = ("mse", "pearson", "spearman", "recall_at_1")
    main_metric = "spearman"

    def problems(self, where: str, task: TaskConfig, project: Project) -> list[str]:
        out = super().problems(where, task, project)
        if task.head.compare not in COMPARISONS:
            out.append(f"{where}.head.compare: {task.head.compare!r} is not one of {', '.join(COMPARISONS)}")
        return out

    def label_role_for(self, spec: HeadConfig) -> str:
        return "score" if spec.compare == "cosine" else ""

    def main(self, spec: HeadConfig) -> str:
        return "spearman" if spec.compare == "cosine" else "recall_at_1"

    def reported(self, spec: HeadConfig) -> tuple[str, ...]:
        return ("mse", "pearson", "spearman") if spec.compare == "cosine" else ("mse", "recall_at_1")

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        out = super().encode(task, tokenizer, batch, label_id, split)
        if task.head.compare == "cosine":
            out["labels"] = [cells.score(task, v, *self.score_range) for v in batch[task.data.label]]
        return out

    def collate(self, data: TaskData, rows: dict, batch: dict, seed: int) -> None:
        if "labels" in rows:
            super().collate(data, rows, batch, seed)

    def build_graph(self, task: TaskConfig, model: nn.Module) -> nn.Module:
        from qarac_gui.core.kinds.layers import VectorHead
        return VectorHead(_terms(task.head.left), _terms(task.head.right), _inputs(task), task.head.compare)

    def host_labels(self, batch: dict, rows: dict) -> Any:
        return batch["labels"].cpu() if "labels" in batch else None

    def typed_hint(self, task: TaskConfig) -> str:
        how = "the highest cosine" if task.head.compare == "cosine" else "the shortest distance"
        left, right = (" and ".join(name for _, name in _terms(getattr(task.head, side))) for side in ("left", "right"))
        return (super().typed_hint(task) + f" Rows are ranked, {how} first: type one text into {left} and a few "
                f"into {right}, one per line, to see which comes first.")

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        """The cosine and the distance of the two sides for each typed row; several rows are ranked, most alike
        first (by cosine or by distance, as the head compares)."""
        import torch
        from torch.nn import functional as F

        from qarac_gui.core.kinds.layers import combine
        batch, rows = self.typed_rows(model, task, tokenizers, inputs)
        with torch.no_grad():
            left = combine(model, _terms(task.head.left), _inputs(task), batch).float().cpu()
            right = combine(model, _terms(task.head.right), _inputs(task), batch).float().cpu()
        cosines = F.cosine_similarity(left, right, dim=-1).tolist()
        distances = (left - right).norm(dim=-1).tolist()
        by_cosine = task.head.compare == "cosine"
        order = sorted(range(len(rows)), key=lambda i: -cosines[i] if by_cosine else distances[i])
        varying = [n for n in rows[0] if len(rows) == 1 or len({row[n] for row in rows}) > 1] or list(rows[0])
        shown = [" | ".join(rows[i][n] for n in varying) for i in range(len(rows))]
        best = order[0]
        text = f"cosine {cosines[best]:.4f}, distance {distances[best]:.4g}"
        if len(rows) > 1:
            text = f"most alike: {shown[best]} ({text})"
        table = tuple((str(rank + 1), shown[i], f"{cosines[i]:.4f}", f"{distances[i]:.4g}")
                      for rank, i in enumerate(order))
        return Prediction(text, ("rank", " | ".join(varying), "cosine", "distance"), table,
                          {"rows": rows, "cosine": cosines, "distance": distances, "ranking": order})

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        import torch

        from qarac_gui.core.kinds import metrics
        if data.task.head.compare == "cosine":
            return metrics.regression_metrics(torch.cat(extras).tolist(), torch.cat(outputs).tolist())
        left = torch.cat([o[0] for o in outputs])
        right = torch.cat([o[1] for o in outputs])
        return {"mse": float(((left - right) ** 2).mean()), **metrics.recall_at_1(left.numpy(), right.numpy())}


class Decode(_OverInputs):
    name, title = "decode", "Decode (generate text)"
    help = ("A decoder backbone writes the target column, conditioned on a sum of sentence vectors given as its "
            "first input embedding.")
    label_role = "target"
    options = ("decoder", "condition")
    expressions = ("condition",)
    metrics, main_metric = ("token_accuracy", "perplexity"), "token_accuracy"

    def problems(self, where: str, task: TaskConfig, project: Project) -> list[str]:
        out = super().problems(where, task, project)
        decoder = project.backbones.get(task.head.decoder)
        if decoder is None:
            out.append(f"{where}.head.decoder: no backbone named {task.head.decoder!r}; name a backbone with "
                       f"role = \"decoder\" (have: {', '.join(project.backbones)})")
        elif decoder.role != "decoder":
            out.append(f"{where}.head.decoder: backbone {task.head.decoder!r} is an encoder; set its role = "
                       "\"decoder\" or name another")
        return out

    def bad_cells(self, task: TaskConfig, columns: dict[str, list]) -> list[tuple[int, str] | None]:
        label = task.data.label
        return super().bad_cells(task, columns) + [cells.first_where(columns[label],
                                                                     lambda v: cells.text_problem(v, label))]

    def backbones(self, task: TaskConfig) -> list[str]:
        return list(dict.fromkeys([*super().backbones(task), task.head.decoder]))

    def stop_ids(self, tokenizer: Any) -> set[int]:
        """The tokens that end a generated text: the decoder tokenizer's separator and end of text."""
        return {tokenizer.sep_token_id, tokenizer.eos_token_id} - {None}

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        """The decoder's greedy text for each typed row, conditioned as in training."""
        import torch

        from qarac_gui.core.kinds.layers import combine, generate
        batch, rows = self.typed_rows(model, task, tokenizers, inputs)
        tokenizer = tokenizers[task.head.decoder]
        with torch.no_grad():
            vector = combine(model, _terms(task.head.condition), _inputs(task), batch)
        # The target was cut to max_length - 1 tokens in training: the vector took the first position.
        ids = generate(model.backbones[task.head.decoder], vector, self.stop_ids(tokenizer), task.max_length - 1)
        texts = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
        if len(rows) == 1:
            return Prediction(texts[0] or "(an empty text)", values={"texts": texts, "rows": rows})
        table = tuple((" | ".join(row.values()), text) for row, text in zip(rows, texts))
        return Prediction(f"{len(texts)} texts", (" | ".join(rows[0]), "generated"), table,
                          {"texts": texts, "rows": rows})

    def prefixes(self, task: TaskConfig) -> dict[str, str]:
        return {**super().prefixes(task), "target" + SEPARATOR: task.head.decoder}

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        out = super().encode(task, tokenizer, batch, label_id, split)
        # One position goes to the condition vector, in front of the target's tokens.
        enc = tokenizer[task.head.decoder](batch[task.data.label], truncation=True, max_length=task.max_length - 1)
        out.update({"target" + SEPARATOR + k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")})
        return out

    def longest(self, task: TaskConfig, prefix: str) -> int:
        # The condition vector takes the decoder's first position, so the target may be one token shorter.
        return task.max_length - 1 if prefix == "target" + SEPARATOR else task.max_length

    def collate(self, data: TaskData, rows: dict, batch: dict, seed: int) -> None:
        import torch
        ids, mask = batch["target" + SEPARATOR + "input_ids"], batch["target" + SEPARATOR + "attention_mask"]
        batch["labels"] = torch.where(mask.bool(), ids, torch.full_like(ids, -100))

    def build_graph(self, task: TaskConfig, model: nn.Module) -> nn.Module:
        from qarac_gui.core.kinds.layers import DecodeHead
        return DecodeHead(_terms(task.head.condition), _inputs(task), task.head.decoder)

    def host_labels(self, batch: dict, rows: dict) -> Any:
        return None

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        from qarac_gui.core.kinds import metrics
        right = sum(float(o[0]) for o in outputs)
        total = sum(float(o[1]) for o in outputs)
        return {"token_accuracy": right / max(1.0, total), **metrics.perplexity(mean_loss)}
