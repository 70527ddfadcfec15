"""Per-task validation metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qarac_gui.core.data.tokenize import EVAL_ONLY, TaskData
from qarac_gui.core.training import metrics

MAIN_METRIC = {"classification": "accuracy", "multilabel": "micro_f1", "regression": "spearman",
               "similarity": "spearman", "token_classification": "entity_f1", "span_qa": "f1",
               "masked_lm": "perplexity"}
METRICS_OF_KIND = {
    "classification": ("accuracy", "macro_f1"),
    "multilabel": ("micro_f1", "macro_f1", "subset_accuracy"),
    "regression": ("mse", "pearson", "spearman"),
    "similarity": ("mse", "pearson", "spearman"),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"),
    "span_qa": ("exact_match", "f1"),
    "masked_lm": ("perplexity",),
}
MAX_ANSWER_TOKENS = 30
EVAL_MASK_SEED = 1234            # masked-LM validation masks stay the same across evaluations, so they compare


def default_monitor(tasks: list[TaskData]) -> str:
    """The main metric of the first task that has validation data ("" when none has)."""
    for data in tasks:
        if data.valid is not None and len(data.valid):
            return f"{data.name}/{MAIN_METRIC[data.task.head.kind]}"
    return ""


@torch.no_grad()
def evaluate_task(model: Any, data: TaskData, device: torch.device, batch_size: int, autocast: Any) -> dict:
    ds = data.valid
    kind = data.task.head.kind
    losses, weights, outputs, extras = [], [], [], []
    for start in range(0, len(ds), batch_size):
        rows = ds[start:start + batch_size]
        batch = {k: v.to(device, non_blocking=True) for k, v in data.collate(rows, EVAL_MASK_SEED + start).items()}
        with autocast():
            out = model(data.name, batch)
        losses.append(out.loss.float())
        weights.append(len(rows["input_ids"]))
        outputs.append(_to_cpu(out.logits))
        extras.append(_host_labels(kind, batch, rows))
    n = sum(weights)
    mean_loss = float(sum(loss.item() * w for loss, w in zip(losses, weights)) / max(1, n))
    result = {"loss": mean_loss}
    result.update(_metrics(data, outputs, extras, mean_loss))
    return result


def _to_cpu(logits: Any) -> Any:
    if isinstance(logits, tuple):
        return tuple(t.float().cpu() for t in logits)
    return logits.float().cpu()


def _host_labels(kind: str, batch: dict, rows: dict) -> Any:
    if kind == "span_qa":
        return {k: rows[k] for k in EVAL_ONLY} | {"ids": rows["input_ids"]}
    if kind == "masked_lm":
        return None
    return batch["labels"].cpu()


def _metrics(data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
    kind = data.task.head.kind
    if kind == "masked_lm":
        return metrics.perplexity(mean_loss)
    if kind == "span_qa":
        predictions, references = [], []
        for (start, end), extra in zip(outputs, extras):
            for i in range(start.shape[0]):
                predictions.append(_best_span(start[i], end[i], extra["offset_mapping"][i], extra["context"][i]))
                references.append(extra["answer_texts"][i])
        return metrics.span_qa_metrics(predictions, references)
    if kind == "token_classification":
        true_tags, pred_tags = [], []
        for logits, labels in zip(outputs, extras):
            pred = logits.argmax(-1)
            for i in range(labels.shape[0]):
                keep = labels[i] != -100
                true_tags.append([data.labels[j] for j in labels[i][keep].tolist()])
                pred_tags.append([data.labels[j] for j in pred[i][keep].tolist()])
        return metrics.entity_metrics(true_tags, pred_tags)
    logits = torch.cat(outputs)
    labels = torch.cat(extras)
    if kind == "classification":
        return metrics.classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), len(data.labels))
    if kind == "multilabel":
        predicted = (torch.sigmoid(logits) > data.task.head.threshold).int().numpy()
        return metrics.multilabel_metrics(labels.int().numpy(), predicted)
    return metrics.regression_metrics(labels.tolist(), logits.tolist())


def _best_span(start: torch.Tensor, end: torch.Tensor, offsets: list, context: str) -> str:
    """Highest start+end score over spans inside the context, at most MAX_ANSWER_TOKENS long."""
    valid = np.array([o[0] >= 0 for o in offsets])
    n = len(offsets)
    s, e = start[:n].numpy(), end[:n].numpy()
    scores = s[:, None] + e[None, :]
    i, j = np.indices(scores.shape)
    allowed = (j >= i) & (j - i < MAX_ANSWER_TOKENS) & valid[:, None] & valid[None, :]
    if not allowed.any():
        return ""
    scores = np.where(allowed, scores, -np.inf)
    a, b = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return context[offsets[a][0]:offsets[b][1]]
