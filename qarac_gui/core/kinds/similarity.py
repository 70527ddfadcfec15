"""Sentence-pair similarity: each text embedded on its own, their cosine regressed onto a score."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qarac_gui.core.kinds import cells
from qarac_gui.core.kinds.base import HeadKind, Prediction, typed_value

if TYPE_CHECKING:
    from torch import nn

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.project.config import HeadConfig, TaskConfig


class Similarity(HeadKind):
    name, title = "similarity", "Sentence-pair similarity"
    help = "Embed both texts; their cosine learns a score in [-1, 1]."
    pair_role = "Second text column"
    label_role = "score"
    needs_pair = True
    score_range = (-1.0, 1.0)
    pooled = True
    default_pooling = "mean"
    metrics, main_metric = ("mse", "pearson", "spearman"), "spearman"
    export_as = "sentence_transformers"
    typed_text, typed_pair = "First sentence", "Second sentence"

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        d = task.data
        out = dict(tokenizer(batch[d.text], truncation=True, max_length=task.max_length))
        out.update({"b_" + k: v for k, v in tokenizer(batch[d.text_pair], truncation=True,
                                                      max_length=task.max_length).items()})
        out["labels"] = [cells.score(task, v, *self.score_range) for v in batch[d.label]]
        return out

    def build(self, spec: HeadConfig, encoder: nn.Module, num_labels: int,
              pretrained_lm: nn.Module | None) -> nn.Module:
        from qarac_gui.core.kinds.layers import SimilarityHead
        return SimilarityHead(spec, encoder.config.hidden_size, num_labels, encoder.config.model_type)

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        import torch

        from qarac_gui.core.kinds import metrics
        return metrics.regression_metrics(torch.cat(extras).tolist(), torch.cat(outputs).tolist())

    def export_problem(self, spec: HeadConfig, model_type: str, hidden_size: int) -> str:
        return ""                   # a sentence-transformers folder takes any pooling and dense layer

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        import torch
        from torch.nn import functional as F

        from qarac_gui.core.kinds.layers import on_device_of
        tokenizer, encoder, head = tokenizers[task.backbone], model.backbones[task.backbone], model.heads[task.name]
        vectors = []
        for name, label in (("text", self.typed_text), ("pair", self.typed_pair)):
            batch = dict(tokenizer(typed_value(inputs, name, label), truncation=True, max_length=task.max_length,
                                   return_tensors="pt"))
            with torch.no_grad():
                vectors.append(head.embed(encoder, on_device_of(encoder, batch)).float().cpu())
        cosine = float(F.cosine_similarity(*vectors)[0])
        return Prediction(f"cosine {cosine:.4f}", values={"cosine": cosine})
