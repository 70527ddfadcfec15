"""Kinds that pool one vector per text (or text pair) and predict from it: a class, several labels, a number."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qarac_gui.core.errors import DataError
from qarac_gui.core.kinds import cells
from qarac_gui.core.kinds.base import (
    NATIVE_ACTIVATION,
    HeadKind,
    Prediction,
    activation_of,
    hidden_layer_of,
    pooling_of,
)

if TYPE_CHECKING:
    from torch import nn

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.project.config import HeadConfig, TaskConfig


class _Pooled(HeadKind):
    pooled = True
    default_hidden_layer = True
    export_as, auto_class, layout = "native", "AutoModelForSequenceClassification", "sequence"

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        out = super().encode(task, tokenizer, batch, label_id, split)
        out["labels"] = [self.label_of(task, v, label_id) for v in batch[task.data.label]]
        return out

    def label_of(self, task: TaskConfig, value: Any, label_id: Any) -> Any:
        raise NotImplementedError

    def loss(self, logits: Any, labels: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def build(self, spec: HeadConfig, encoder: nn.Module, num_labels: int,
              pretrained_lm: nn.Module | None) -> nn.Module:
        from qarac_gui.core.kinds.layers import PooledHead
        config = encoder.config
        return PooledHead(spec, config.hidden_size, self.outputs(num_labels), config.model_type, self.loss)

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        import torch

        from qarac_gui.core.kinds.layers import on_device_of
        encoder = model.backbones[task.backbone]
        batch = on_device_of(encoder, self.typed_batch(task, tokenizers[task.backbone], inputs))
        with torch.no_grad():
            logits = model.heads[task.name].logits(encoder, batch)[0].float().cpu()
        return self.read(task, logits, labels)

    def read(self, task: TaskConfig, logits: Any, labels: list[str]) -> Prediction:
        """The prediction from the head's outputs for one row."""
        raise NotImplementedError

    def export_problem(self, spec: HeadConfig, model_type: str, hidden_size: int) -> str:
        native = NATIVE_ACTIVATION[model_type]
        if pooling_of(spec) != "cls" or not hidden_layer_of(spec) or spec.hidden_size not in (0, hidden_size) \
                or activation_of(spec, model_type) != native:
            return (f"{model_type}'s own classifier pools the first token through one {native} layer of the "
                    "encoder's width; set pooling = \"cls\", hidden_layer = true, hidden_size = 0 and "
                    "activation = \"auto\" to export this head for plain transformers")
        return ""


class Classification(_Pooled):
    name, title = "classification", "Single-label classification"
    help = "One label per text (or text pair)."
    has_classes = single_label = True
    metrics, main_metric = ("accuracy", "macro_f1"), "accuracy"
    problem_type = "single_label_classification"

    def labels_in(self, task: TaskConfig, value: Any) -> list:
        if isinstance(value, (list, tuple, dict)):
            raise DataError(f"task {task.name}: a label cell holds {cells.short(value)}, but a classification head "
                            "takes one label per row; use a multilabel head for lists of labels")
        return [] if value is None else [value]

    def order_labels(self, seen: set) -> list[str]:
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in seen)
        return [str(v) for v in sorted(seen)] if numeric else sorted(str(v) for v in seen)

    def bad_cells(self, task: TaskConfig, columns: dict[str, list]) -> list[tuple[int, str] | None]:
        label = task.data.label
        missing = f"has no label in {label!r} (null or an empty cell); fill it in or remove the row"
        return super().bad_cells(task, columns) + [cells.first_where(columns[label],
                                                                     lambda v: None if v is not None else missing)]

    def label_of(self, task: TaskConfig, value: Any, label_id: Any) -> int:
        return label_id(value)

    def collate(self, data: TaskData, rows: dict, batch: dict, seed: int) -> None:
        import torch
        batch["labels"] = torch.tensor(rows["labels"], dtype=torch.long)

    def loss(self, logits: Any, labels: Any) -> tuple[Any, Any]:
        from torch.nn import functional as F
        return F.cross_entropy(logits.float(), labels), logits

    def read(self, task: TaskConfig, logits: Any, labels: list[str]) -> Prediction:
        probabilities = dict(zip(labels, logits.softmax(-1).tolist(), strict=True))
        label = labels[int(logits.argmax())]
        return Prediction(f"{label} ({probabilities[label]:.1%})", ("label", "probability"),
                          _by_probability(probabilities), {"label": label, "probabilities": probabilities})

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        import torch

        from qarac_gui.core.kinds import metrics
        labels = torch.cat(extras)
        return metrics.classification_metrics(labels.tolist(), torch.cat(outputs).argmax(-1).tolist(), len(data.labels))


class Multilabel(_Pooled):
    name, title = "multilabel", "Multi-label classification"
    help = "Any number of labels per text."
    label_role = "labels"
    has_classes = True
    options = ("threshold", "label_separator")
    metrics, main_metric = ("micro_f1", "macro_f1", "subset_accuracy"), "micro_f1"
    problem_type = "multi_label_classification"

    def labels_in(self, task: TaskConfig, value: Any) -> list:
        return cells.split_labels(value, task.head.label_separator)

    def label_of(self, task: TaskConfig, value: Any, label_id: Any) -> list[float]:
        row = [0.0] * label_id.count
        for name in cells.split_labels(value, task.head.label_separator):
            row[label_id(name)] = 1.0
        return row

    def loss(self, logits: Any, labels: Any) -> tuple[Any, Any]:
        from torch.nn import functional as F
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float()), logits

    def read(self, task: TaskConfig, logits: Any, labels: list[str]) -> Prediction:
        threshold = task.head.threshold
        probabilities = dict(zip(labels, logits.sigmoid().tolist(), strict=True))
        chosen = [name for name, p in probabilities.items() if p > threshold]
        text = ", ".join(chosen) if chosen else f"no label (none is above the threshold {threshold:g})"
        return Prediction(text, ("label", "probability"), _by_probability(probabilities),
                          {"labels": chosen, "probabilities": probabilities, "threshold": threshold})

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        import torch

        from qarac_gui.core.kinds import metrics
        predicted = (torch.sigmoid(torch.cat(outputs)) > data.task.head.threshold).int().numpy()
        return metrics.multilabel_metrics(torch.cat(extras).int().numpy(), predicted)


class Regression(_Pooled):
    name, title = "regression", "Regression"
    help = "One number per text (or text pair)."
    label_role = "score"
    metrics, main_metric = ("mse", "pearson", "spearman"), "spearman"
    problem_type = "regression"

    def outputs(self, num_labels: int) -> int:
        return 1

    def label_of(self, task: TaskConfig, value: Any, label_id: Any) -> float:
        return cells.score(task, value)

    def loss(self, logits: Any, labels: Any) -> tuple[Any, Any]:
        from torch.nn import functional as F
        logits = logits.squeeze(-1)
        return F.mse_loss(logits.float(), labels.float()), logits

    def read(self, task: TaskConfig, logits: Any, labels: list[str]) -> Prediction:
        value = float(logits[0])
        return Prediction(f"{value:.4g}", values={"value": value})

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        import torch

        from qarac_gui.core.kinds import metrics
        return metrics.regression_metrics(torch.cat(extras).tolist(), torch.cat(outputs).tolist())


def _by_probability(probabilities: dict[str, float]) -> tuple[tuple[str, str], ...]:
    return tuple((name, f"{p:.4f}") for name, p in sorted(probabilities.items(), key=lambda item: -item[1]))
