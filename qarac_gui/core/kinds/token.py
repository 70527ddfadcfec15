"""Token classification: a tag per word (named entities, BIO tags)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qarac_gui.core.errors import DataError, UserError
from qarac_gui.core.kinds import cells
from qarac_gui.core.kinds.base import HeadKind, Prediction, TypedInput

if TYPE_CHECKING:
    from torch import nn

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.project.config import HeadConfig, TaskConfig


class TokenClassification(HeadKind):
    name, title = "token_classification", "Token classification"
    help = "A tag per word (e.g. named entities, BIO)."
    text_role = "Tokens column"
    label_role = "tags"
    words_input = has_classes = True
    metrics = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")
    main_metric = "entity_f1"
    auto_class, layout = "AutoModelForTokenClassification", "token"
    typed_text = "Words (separated by spaces)"

    def labels_in(self, task: TaskConfig, value: Any) -> list:
        if value is not None and not isinstance(value, (list, tuple)):
            raise DataError(f"task {task.name}: a tag cell holds {cells.short(value)}, but a token classification "
                            "head needs a list of tags per row, one per word")
        return [str(v) for v in (value or [])]

    def order_labels(self, seen: set) -> list[str]:
        # O first, then each entity type's B- before its I-, so label ids read naturally in id2label.
        return sorted(seen, key=lambda t: (t != "O", t[2:] if t[1:2] == "-" else t, t))

    def bad_cells(self, task: TaskConfig, columns: dict[str, list]) -> list[tuple[int, str] | None]:
        d = task.data
        words = columns[d.text]
        found = [cells.first_where(words, lambda w: cells.words_problem(w, d.text))]
        if d.label in columns:
            found.append(cells.first_where(zip(words, columns[d.label]), lambda pair: cells.tags_problem(task, *pair)))
        return found

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        words = batch[task.data.text]               # lists of words, as many as tags: checked by bad_cells
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=task.max_length)
        out = dict(enc)
        out["labels"] = []
        for i, tags in enumerate(batch[task.data.label]):
            previous, row = None, []
            for word in enc.word_ids(i):
                # Only a word's first sub-token is labelled; the rest are ignored by the loss and the metric.
                row.append(-100 if word is None or word == previous else label_id(tags[word]))
                previous = word
            out["labels"].append(row)
        return out

    def collate(self, data: TaskData, rows: dict, batch: dict, seed: int) -> None:
        from qarac_gui.core.kinds.layers import pad
        batch["labels"] = pad(rows["labels"], batch["input_ids"].shape[1], -100)

    def build(self, spec: HeadConfig, encoder: nn.Module, num_labels: int,
              pretrained_lm: nn.Module | None) -> nn.Module:
        from qarac_gui.core.kinds.layers import TokenHead
        return TokenHead(spec, encoder.config.hidden_size, num_labels, encoder.config.model_type)

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        from qarac_gui.core.kinds import metrics
        true_tags, pred_tags = [], []
        for logits, labels in zip(outputs, extras):
            pred = logits.argmax(-1)
            for i in range(labels.shape[0]):
                keep = labels[i] != -100
                true_tags.append([data.labels[j] for j in labels[i][keep].tolist()])
                pred_tags.append([data.labels[j] for j in pred[i][keep].tolist()])
        return metrics.entity_metrics(true_tags, pred_tags)

    def typed_inputs(self, task: TaskConfig) -> list[TypedInput]:
        return [TypedInput("text", self.typed_text)]

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        import torch

        from qarac_gui.core.kinds.layers import on_device_of
        from qarac_gui.core.kinds.metrics import _entities
        words = (inputs.get("text") or "").split()
        if not words:
            raise UserError(f"type some words into {self.typed_text!r} first")
        encoder = model.backbones[task.backbone]
        enc = tokenizers[task.backbone]([words], is_split_into_words=True, truncation=True,
                                        max_length=task.max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model.heads[task.name].logits(encoder, on_device_of(encoder, dict(enc)))[0].float().cpu()
        first: dict[int, int] = {}
        for position, word in enumerate(enc.word_ids(0)):
            if word is not None:
                first.setdefault(word, position)       # a word's first sub-token carries its tag, as in training
        # Words beyond max_length tokens were cut off: they get no tag.
        tags = [labels[int(logits[first[i]].argmax())] if i in first else "" for i in range(len(words))]
        tagged = [t for t in tags if t]
        found = [(" ".join(words[a:b + 1]), etype) for etype, a, b in sorted(_entities(tagged), key=lambda e: e[1])]
        text = "; ".join(f"{span} ({etype})" for span, etype in found) or "no entity"
        cut = len(tagged) < len(words)
        if cut:
            text += f" (the last {len(words) - len(tagged)} word(s) are beyond max_length = {task.max_length})"
        return Prediction(text, ("word", "tag"), tuple((w, t or "(cut off)") for w, t in zip(words, tags)),
                          {"tags": list(zip(words, tags)), "entities": found})
